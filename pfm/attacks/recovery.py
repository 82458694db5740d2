"""Adversarial prompt recovery / few-shot relearning: can an adversary holding the
unlearned model bring a forgotten class back with m labelled shots and a budget fixed in
advance — more than from a model that never saw the class under the very same attack?

One attack (``recover``): a registered capability (``pfm.attacks.capabilities``: the
trained ones in ``pfm.attacks.relearn``, the training-free prototype attack in
``pfm.attacks.prototype``) changes a copy of the model from what the adversary holds
(``pfm.attacks.probes.AdversaryView``: the m shots, retained-class anchors, and at
m = 0 only the classes' ids and noise); the shared harness (``pfm.attacks.harness``)
scores it. The attacked model and its never-seen reference get the same capability,
budget, shots, noise and probes (``pfm.attacks.targets`` pairs them).

Per attack, at the budget's end (``Outcome``): ``acc``, the test forgotten-class accuracy
(the reported number; no step is chosen from any curve); ``oracle_acc``, the best point
of the test curve (an oracle upper bound, for the attacked model and its reference
alike); ``pre_retain_acc`` and ``retain_acc``, retained-class test accuracy before and
after, and ``collapsed`` when the latter falls below ``collapse_fraction`` of the former
(a collapse is not a recovery); ``relearn_steps``/``relearned`` (the first curve step at
``relearn_threshold``, ERASURE's relearn time); and the specificity of what was recovered:
retained-class test samples, noise-probe inputs (another law and seed than the attack's
own noise) and OOD images predicted as a forgotten class. Residual knowledge = ``acc``
− the reference's ``acc``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from pfm.attacks import prototype, relearn  # noqa: F401  (registers the capabilities)
from pfm.attacks.capabilities import CAPABILITIES
from pfm.attacks.harness import Forward, Outcome, Scorer, ScoringSets, scoring_sets
from pfm.attacks.probes import AttackData, adversary_view
from pfm.attacks.protocol import RecoveryParams
from pfm.evaluate import pool
from pfm.models.checkpoint import load_model
from pfm.models.prompted import PromptedClassifier
from pfm.precision import autocast


@dataclass(frozen=True)
class Recovery(Outcome):
    model: PromptedClassifier  # the attacked copy at the budget's end
    sets: ScoringSets  # what it was scored on: the same copy's attack at another m reuses it

    def outcome(self) -> Outcome:
        """These numbers without the attacked model."""
        return Outcome(**{f.name: getattr(self, f.name) for f in fields(Outcome)})


def recover(
    model: PromptedClassifier,
    data: AttackData,
    classes: tuple[int, ...],
    m: int,
    capability: str,
    params: RecoveryParams,
    seed: int,
    sets: ScoringSets | None = None,
) -> Recovery:
    """The attack (module docstring) under ``capability`` with m shots per class of
    ``classes`` on a copy of ``model``; seed-deterministic, and the same shots, noise,
    fresh rows and probes for every model given the same seed. ``sets``: the copy's
    scoring sets, where the same copy's attack at another m built them."""
    chosen = CAPABILITIES.get(capability)
    if not chosen.applies(m):
        raise ValueError(f"capability {capability!r} needs m ≥ {chosen.min_shots}, got {m}")
    generator = torch.Generator().manual_seed(seed)
    attacked, trained = chosen.prepare(model, classes, params.prompt_init, generator)
    attacked.eval()
    forward = Forward(attacked, chosen.head_only, params.batch_size, generator)
    if sets is None:
        sets = scoring_sets(forward, data, classes, params.curve_samples, params.ood_samples, seed)
    scorer = Scorer(forward, sets, classes, params.eval_every)
    view = adversary_view(
        data.train, classes, m, params.anchor_shots, params.noise_inputs, model.num_classes, seed
    )
    last = chosen.run(forward, trained, view, params, scorer.record)
    outcome = scorer.outcome(last, params.collapse_fraction, params.relearn_threshold)
    return Recovery(**outcome.__dict__, model=attacked, sets=sets)


def attack_every_shot(
    model: PromptedClassifier,
    data: AttackData,
    classes: tuple[int, ...],
    capability: str,
    params: RecoveryParams,
    seed: int,
) -> dict[int, Outcome]:
    """The attack under ``capability`` on ``model`` at every m of ``params.shots`` it
    applies to (the prototype attack needs m ≥ 1). The copy before the attack does not
    depend on m (same capability, seed and fresh rows), so its scoring sets (cached head
    inputs and its retained accuracy before the attack) are built once, at the first m."""
    shots = [m for m in params.shots if CAPABILITIES.get(capability).applies(m)]
    outcomes: dict[int, Outcome] = {}
    sets = None
    with autocast(next(model.parameters()).device, params.precision):
        for m in shots:
            attack = recover(model, data, classes, m, capability, params, seed, sets)
            outcomes[m] = attack.outcome()
            sets = attack.sets
    return outcomes


def attack_saved(
    path: Path,
    classes: tuple[int, ...],
    seed: int,
    capability: str,
    data: AttackData,
    params: RecoveryParams,
    device: torch.device,
) -> dict[int, Outcome]:
    """``attack_every_shot`` on the model saved at ``path``."""
    model = load_model(path).to(device)
    return attack_every_shot(model, data, classes, capability, params, seed)


@dataclass(frozen=True)
class DrawResult:
    """One attacked draw under one capability: per m, the attack on the unlearned model
    and the same attack on its never-seen reference (the very same outcomes for
    ``retrain`` and ``retrain_prompt``, their own references)."""

    classes: tuple[int, ...]
    capability: str
    attacked: Mapping[int, Outcome]
    reference: Mapping[int, Outcome]


# the numbers each side of a unit keeps; the reference's get a ``reference_`` prefix
SIDES = (
    "acc", "oracle_acc", "pre_retain_acc", "retain_acc", "collapsed", "retain_to_recovered",
    "noise_to_recovered", "ood_to_recovered",
)  # fmt: skip


def unit_fields(attacked: Outcome, reference: Outcome) -> dict[str, float | int]:
    """The numbers of one (draw, capability, m) unit: the attack on the unlearned model,
    the same attack on the reference, and their difference (``residual``); an OOD share
    is left out where no OOD set was measured."""
    values: dict[str, float | int] = {}
    for name in SIDES:
        for prefix, outcome in (("", attacked), ("reference_", reference)):
            value = getattr(outcome, name)
            if value is not None:
                values[prefix + name] = float(value)
    values["residual"] = attacked.acc - reference.acc
    values["relearn_steps"] = attacked.relearn_steps
    values["relearned"] = float(attacked.relearned)
    return values


def unit_name(capability: str, k: int, m: int) -> str:
    """``<cap> k<k> m<m>``: a curve's name, and (dotted) a metric's middle."""
    return f"{capability} k{k} m{m}"


def mean_curve(curves: Sequence[list[tuple[int, float]]]) -> list[dict[str, float]]:
    """Pointwise mean over draws of curves that share their steps, as the records
    ``pfm.reporting.aggregate.read_relearn_curves`` reads."""
    steps = [s for s, _ in curves[0]]
    if any([s for s, _ in c] != steps for c in curves):
        raise ValueError("relearn curves of one run must share their steps")
    accs = np.array([[a for _, a in c] for c in curves])  # (draws, points)
    return [{"step": s, "acc": float(a)} for s, a in zip(steps, accs.mean(axis=0), strict=True)]


Units = list[dict[str, object]]
Curves = dict[str, list[dict[str, float]]]


def summarise(results: Sequence[DrawResult]) -> tuple[dict, Curves]:
    """A run's metrics and relearn curves from its (draw, capability) results.

    Metrics: ``recovery.<cap>.k<k>.m<m>.<field>.{mean,std}`` over the attacked draws,
    ``recovery.draws`` (attacked draws, every k) and ``units``: one record per (draw,
    capability, m), ``{"classes", "k", "capability", "m", <field>…}``, from which
    ``pfm.reporting.aggregate`` draws confidence intervals. Curves: ``<cap> k<k> m<m>``
    (mean over the draws) and ``<cap> k<k> m<m> reference``."""
    units: Units = []
    grouped: dict[tuple[str, int, int], list[dict[str, float | int]]] = {}
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for result in results:
        k = len(result.classes)
        for m, attacked in result.attacked.items():
            reference = result.reference[m]
            values = unit_fields(attacked, reference)
            grouped.setdefault((result.capability, k, m), []).append(values)
            head = {"classes": list(result.classes), "k": k, "capability": result.capability}
            units.append({**head, "m": m, **values})
            name = unit_name(result.capability, k, m)
            curves.setdefault(name, []).append(attacked.curve)
            curves.setdefault(f"{name} reference", []).append(reference.curve)
    metrics: dict[str, object] = {"recovery.draws": len({r.classes for r in results})}
    for (capability, k, m), records in grouped.items():
        metrics.update(pool(records, f"recovery.{capability}.k{k}.m{m}."))
    metrics["units"] = units
    return metrics, {name: mean_curve(c) for name, c in curves.items()}
