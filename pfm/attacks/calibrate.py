"""Calibrating the recovery attack's budget, once, on runs the report never scores:
``python -m pfm.attacks.calibrate``.

The protocol (``pfm.attacks.protocol``) fixes each trained capability's budget (Adam
steps and lr) in params before any attack is scored, and applies it identically to
every attacked model and its reference. This picks each capability's knob from a small
grid: a trained capability's lr (at the steps params set), the training-free prototype
attack's ``prototype_weight`` (the prototype's share of the head row):

- **on the never-seen references only**: ``retrain`` for the plain capabilities,
  ``retrain_prompt`` for the prompt ones, each attacked on the classes it never saw. A
  never-seen model holds nothing of those classes, so what the attack reaches there is
  what m shots (or, at m = 0, noise and the class ids) can teach under the capability:
  the rate is set to the attack's own strength, from no unlearned model's leak, and
  favours no method. An lr chosen on the unlearned models would be tuned to whichever
  leaks most;
- **scored on the validation split**, passed where the attack scores
  (``AttackData.test``); the test split is never read, and neither is another dataset
  (no OOD probe: specificity plays no part in the choice);
- **with the attack's own shots, anchors, noise and collapse rule**, at the m of
  ``--shots`` (default: 0 and the largest of ``attacks.recovery.shots``).

Rule, per capability: among the values under which no run (draw, m) collapsed — retained
accuracy below ``collapse_fraction`` of its pre-attack value, as the protocol marks it —
the one with the highest mean validation forgotten-class accuracy; a tie goes to the
smaller value (the gentler attack). A value that recovers by collapsing the model is no
stronger attack, only a broken one.
"""

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch

from pfm.attacks.capabilities import CAPABILITIES, Capability
from pfm.attacks.harness import Outcome
from pfm.attacks.probes import AttackData
from pfm.attacks.protocol import RecoveryParams
from pfm.attacks.recovery import attack_saved
from pfm.attacks.targets import PLAIN_REFERENCE, Target, recovery_runs
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, matrix, section
from pfm.data import load_prepared
from pfm.files import write_json
from pfm.parallel import run_all
from pfm.train import train_device
from pfm.unlearn.base import PROMPT_REFERENCE

RATES = (0.001, 0.003, 0.01, 0.03, 0.1)  # the default grid of Adam rates tried
WEIGHTS = (0.25, 0.5, 0.75, 1.0)  # the default grid of prototype weights tried
FAMILIES = ((True, PROMPT_REFERENCE), (False, PLAIN_REFERENCE))  # prompted → its reference
TIE = 1e-9  # mean accuracies this close are equal (the smaller rate wins)


@dataclass(frozen=True)
class Trial:
    """One (capability, knob value) tried: the outcomes of every reference draw at every m."""

    capability: str
    value: float
    outcomes: tuple[Outcome, ...]

    @property
    def acc(self) -> float:
        """Mean validation forgotten-class accuracy at the budget's end."""
        return mean([o.acc for o in self.outcomes])

    @property
    def collapsed(self) -> float:
        """The share of runs that collapsed."""
        return mean([float(o.collapsed) for o in self.outcomes])

    @property
    def retain_acc(self) -> float:
        return mean([o.retain_acc for o in self.outcomes])

    @property
    def pre_retain_acc(self) -> float:
        return mean([o.pre_retain_acc for o in self.outcomes])


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def calibrated_capabilities(params: RecoveryParams) -> list[Capability]:
    """The listed capabilities that have a knob to calibrate."""
    chosen = [CAPABILITIES.get(name) for name in params.capabilities]
    return [c for c in chosen if c.knob is not None]


def reference_methods(capability: Capability) -> list[str]:
    """The never-seen references of the families ``capability`` fits."""
    return [method for prompted, method in FAMILIES if capability.fits(prompted)]


def reference_targets(
    models: Path,
    prompt_reference: Path,
    seed: int,
    methods: Sequence[str],
    ks: Sequence[int],
    limit: int | None,
) -> dict[str, list[Target]]:
    """Each reference method's draws of every k of ``ks`` (the first ``limit``), laid out
    as the attack stage reads them; a reference of the wrong family is an error."""
    targets = {}
    for method in methods:
        (run,) = recovery_runs(models, prompt_reference, [(method, seed)], ks, limit)
        if run.prompted != (method == PROMPT_REFERENCE):
            raise ValueError(f"the {method} models at seed {seed} are of the other family")
        targets[method] = [attacked for attacked, _ in run.draws]
    return targets


def attack_run(
    target: Target,
    method: str,
    capability: Capability,
    value: float,
    data: AttackData,
    params: RecoveryParams,
    device: torch.device,
) -> list[Outcome]:
    """One reference draw attacked under ``capability`` with its knob at ``value``, every
    m of ``params.shots`` it applies to; prints one progress line."""
    tuned = capability.with_knob(params, value)
    outcomes = attack_saved(
        target.path, target.classes, target.seed, capability.name, data, tuned, device
    )
    shown = " ".join(
        f"m{m} {o.acc:.3f}{' collapsed' if o.collapsed else ''}" for m, o in outcomes.items()
    )
    print(
        f"{capability.name} {capability.knob} {value:g} {method} {list(target.classes)}: {shown}",
        flush=True,
    )
    return list(outcomes.values())


def calibrate(
    targets: Mapping[str, Sequence[Target]],
    data: AttackData,
    params: RecoveryParams,
    grids: Mapping[str, Sequence[float]],
    workers: int,
    device: torch.device,
) -> list[Trial]:
    """Every calibrated capability of ``params`` at every value of its knob's grid
    (``grids``: knob → values) on every draw of its references in ``targets``, side by
    side in ``workers`` processes (the attacks that run the encoder first: side-by-side
    workers finish soonest that way)."""
    plan = [
        (capability, value, method, target)
        for capability in calibrated_capabilities(params)
        for value in grids[capability.knob]
        for method in reference_methods(capability)
        for target in targets[method]
    ]
    order = sorted(range(len(plan)), key=lambda i: plan[i][0].head_only)
    jobs = []
    for i in order:
        capability, value, method, target = plan[i]
        jobs.append(partial(attack_run, target, method, capability, value, data, params, device))
    done = dict(zip(order, run_all(jobs, workers, device), strict=True))
    results = [done[i] for i in range(len(plan))]
    grouped: dict[tuple[str, float], list[Outcome]] = {}
    for (capability, value, _, _), outcomes in zip(plan, results, strict=True):
        grouped.setdefault((capability.name, value), []).extend(outcomes)
    return [Trial(name, value, tuple(runs)) for (name, value), runs in grouped.items()]


def choose(trials: Sequence[Trial]) -> dict[str, float | None]:
    """Per capability, the value of the highest mean accuracy among the trials where no
    run collapsed, the smaller on a tie; ``None`` where every value collapsed somewhere."""
    chosen: dict[str, float | None] = {}
    for trial in trials:
        chosen.setdefault(trial.capability, None)
    for name in chosen:
        kept = [t for t in trials if t.capability == name and not t.collapsed]
        if kept:
            best = max(t.acc for t in kept)
            chosen[name] = min(t.value for t in kept if t.acc >= best - TIE)
    return chosen


def table(trials: Sequence[Trial], chosen: Mapping[str, float | None]) -> str:
    """Every trial as a row; ``*`` marks the chosen value."""
    lines = [
        f"{'capability':<12} {'knob':<16} {'value':>7} {'val acc':>8} {'collapsed':>9} "
        f"{'retained':>9} {'pre':>6} {'runs':>5}"
    ]
    for t in trials:
        mark = " *" if chosen.get(t.capability) == t.value else ""
        knob = CAPABILITIES.get(t.capability).knob
        lines.append(
            f"{t.capability:<12} {knob:<16} {t.value:>7g} {t.acc:>8.3f} {t.collapsed:>9.2f} "
            f"{t.retain_acc:>9.3f} {t.pre_retain_acc:>6.3f} {len(t.outcomes):>5}{mark}"
        )
    return "\n".join(lines)


def yaml_float(value: float) -> str:
    """``value`` as YAML reads back a float (PyYAML takes ``1e-05`` for a string)."""
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


def params_block(params: RecoveryParams, chosen: Mapping[str, float | None], dataset: str) -> str:
    """The ``attacks.recovery.by_dataset`` entry of ``dataset`` the chosen values make,
    indented as in params.yaml: ``budget`` with the chosen rates (at params' steps), then
    every other knob chosen; a capability with nothing chosen keeps the shared value."""
    picked = {CAPABILITIES.get(n): v for n, v in chosen.items() if v is not None}
    rates = {c.budget_key: v for c, v in picked.items() if c.budget_key is not None}
    lines = ["    by_dataset:", f"      {dataset}:"]
    if rates:
        lines.append("        budget:")
        for key, lr in rates.items():
            steps = params.budget[key].steps
            lines.append(f"          {key}: {{steps: {steps}, lr: {yaml_float(lr)}}}")
    lines += [
        f"        {c.knob}: {yaml_float(v)}" for c, v in picked.items() if c.budget_key is None
    ]
    return "\n".join(lines)


def summary(
    trials: Sequence[Trial],
    chosen: Mapping[str, float | None],
    params: RecoveryParams,
    shots: Sequence[int],
) -> dict:
    """What ``--out`` holds: every trial, the chosen budget and every other chosen knob
    (null: none kept)."""
    capabilities = {name: CAPABILITIES.get(name) for name in chosen}
    trained = {n: c for n, c in capabilities.items() if c.budget_key is not None}
    steps = {n: params.budget_of(c).steps for n, c in trained.items()}
    return {
        "shots": list(shots),
        "trials": [
            {"capability": t.capability, "knob": capabilities[t.capability].knob,
             "value": t.value, "steps": steps.get(t.capability), "acc": t.acc,
             "collapsed": t.collapsed, "retain_acc": t.retain_acc,
             "pre_retain_acc": t.pre_retain_acc, "runs": len(t.outcomes)}
            for t in trials
        ],
        "budget": {
            c.budget_key: None if chosen[n] is None else {"steps": steps[n], "lr": chosen[n]}
            for n, c in trained.items()
        },
        **{c.knob: chosen[n] for n, c in capabilities.items() if n not in trained},
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pfm.attacks.calibrate", description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="data/prepared/<dataset>")
    parser.add_argument(
        "--models",
        required=True,
        type=Path,
        help="the unlearn stage's models/unlearned/<ds>/seed<s>",
    )
    parser.add_argument(
        "--prompt-reference", required=True, type=Path, help="models/attack_reference/<ds>"
    )
    parser.add_argument("--seed", type=int, default=0, help="the training seed of the models")
    parser.add_argument("--rates", type=float, nargs="+", default=RATES, help="Adam lr grid")
    parser.add_argument(
        "--weights", type=float, nargs="+", default=WEIGHTS, help="prototype_weight grid"
    )
    parser.add_argument(
        "--shots", type=int, nargs="+", help="m tried (default: 0 and attacks.recovery.shots' max)"
    )
    parser.add_argument("--draws", type=int, help="draws per k (default: attacks.recovery.draws)")
    parser.add_argument("--workers", type=int, help="processes (default: params' workers)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, help="write the trials and the budget here (JSON)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    recovery = section(section(params, "attacks"), "recovery")
    dataset = load_prepared(args.data)
    recovery = from_mapping(RecoveryParams, recovery, "attacks.recovery").for_dataset(dataset.name)
    if min(args.rates) <= 0:
        raise ValueError(f"every rate must be > 0, got {args.rates}")
    if not all(0 < w <= 1 for w in args.weights):
        raise ValueError(f"every prototype weight must be in (0, 1], got {args.weights}")
    shots = tuple(sorted(set(args.shots or (0, max(recovery.shots)))))
    draws = recovery.draws if args.draws is None else args.draws
    recovery = replace(recovery, shots=shots)
    methods = sorted({m for c in calibrated_capabilities(recovery) for m in reference_methods(c)})
    targets = reference_targets(
        args.models, args.prompt_reference, args.seed, methods, recovery.k, draws
    )
    data = AttackData(dataset.splits["train"], dataset.splits["val"])  # never the test split
    workers = matrix(params).workers if args.workers is None else args.workers
    grids = {"lr": args.rates, "prototype_weight": args.weights}
    trials = calibrate(targets, data, recovery, grids, workers, train_device(params))
    chosen = choose(trials)
    print(table(trials, chosen))
    print(params_block(recovery, chosen, dataset.name))
    if args.out is not None:
        write_json(args.out, summary(trials, chosen, recovery, shots))
    failed = sorted(name for name, value in chosen.items() if value is None)
    if failed:
        raise ValueError(f"every value of the grid collapsed a run of {failed}: try smaller ones")


if __name__ == "__main__":
    run_stage(main, "calibrate")
