"""Adversarial prompt recovery / few-shot relearning: can an adversary holding the
unlearned model bring a forgotten class back with a few labelled shots and a small
optimisation budget — more than from a model that never saw the class?

**Capabilities** (``CAPABILITIES``): what the adversary may train. Each fits one model
family, and the attacked model and its never-seen reference always get the same one,
with the same budget, shots, noise and seeds (``pfm.attacks.targets`` pairs them):

- ``prompt`` (prompt models): a fresh prompt row per forgotten class
  (``PromptedClassifier.with_prompt``; N(0, 1) as at training, or zeros) and nothing
  else; a row the model still holds for the class (a prompt that was not really deleted)
  is where it starts instead — whatever the checkpoint keeps is the adversary's;
- ``prompt_head`` (prompt models): that row plus the forgotten classes' head rows (their
  weight rows and bias entries; row masks, nothing else of the head moves). Without it the
  comparison is rigged: a never-seen reference, built without the class's prompt and
  trained with the class's logit only ever pushed down, cannot rebind the class through a
  prompt alone, so the residual of ``prompt`` is mostly the attacked model's accuracy;
- ``head`` (plain models): the whole head;
- ``head_lora`` (plain models): the head and the LoRA adapters.

Objective per step, full-batch Adam at ``lr`` under deployment inference (``full_bank``;
model in eval mode, so no dropout): cross-entropy of the positives toward their forgotten
class, plus cross-entropy of ``anchor_shots`` labelled train samples per retained class
toward their true labels — without the anchor, "predict the forgotten class for
everything" would score perfect recovery on any model. Positives: the m shots per class
(the same nested, seeded shots for every model: m = 1 ⊂ m = 5); data-free (m = 0):
``noise_inputs`` fresh uniform-noise images per class each step, labelled per class — at
k = 2 both classes get the same kind of noise, so only what the model still holds of each
class can tell them apart, and the forgotten-class accuracy over both classes' samples
measures whether it does.

**Stopping step chosen on held-out data.** At step 0 and every ``eval_every`` steps the
attack measures forgotten-class accuracy on the validation split (the adversary's
held-out data) and on test. The adversary keeps the parameters of the step with the best
validation accuracy (ties: the earliest), so a curve that peaks and falls is scored at its
peak as the adversary would find it, not at the budget's end. Per attack (``Outcome``):
``acc`` (test forgotten-class accuracy at the chosen step), ``acc_end`` (at the budget's
end), ``best_step``, ``retain_acc`` (retained-class test accuracy at the chosen step: what
the recovery cost), ``relearn_steps`` (the first curve step whose test forgotten-class
accuracy reaches ``relearn_threshold``; ``steps`` if none does — ERASURE's relearn time)
with ``relearned``, and the specificity of what was recovered at the chosen step:
``retain_to_recovered`` (retained-class test samples predicted as a forgotten class),
``noise_to_recovered`` (``ood_samples`` fresh uniform-noise inputs, seeded apart from the
attack's own noise) and ``ood_to_recovered`` (``ood_samples`` test images of another
dataset, ``ood_dataset``). A recovery that maps everything to the class scores 1 on them;
a real one stays near 0. Residual knowledge = ``acc`` − the reference's ``acc``, under the
same capability. In the spirit of the relearning evaluations of Lynch et al. ("Eight
Methods to Evaluate Robust Unlearning in LLMs", 2024), Hu et al. ("Jogging the Memory of
Unlearned LLMs Through Targeted Relearning Attacks", 2024) and ERASURE's relearn time.
"""

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pfm.batches import SplitTensors
from pfm.config import Count, Counts, Natural, Naturals, NonEmpty, OneOf, Rate, Share
from pfm.data import PreparedDataset, build_dataset
from pfm.data.prepared import Split
from pfm.data.registry import DatasetName
from pfm.evaluate import pool
from pfm.models.checkpoint import load_model
from pfm.models.prompted import PromptedClassifier
from pfm.modes import mode_logits
from pfm.precision import Precision, autocast
from pfm.unlearn.data import class_slice

MODE = "full_bank"  # deployment inference, during the attack and its evaluation
CAPABILITIES = ("prompt", "prompt_head", "head", "head_lora")  # what the adversary trains
Capability = Annotated[str, OneOf(CAPABILITIES, "capability")]
INITS = ("normal", "zeros")  # a fresh prompt row: N(0, 1) as at training, or zeros
PROBE_STREAM = 2  # seeds the specificity probes apart from the attack's own draws


def fits(capability: str, prompted: bool) -> bool:
    """Whether ``capability`` applies to a model with prompts (``prompted``) or without:
    ``prompt*`` to prompt models, ``head*`` to prompt-free ones."""
    return capability.startswith("prompt") == prompted


@dataclass(frozen=True)
class RecoveryParams:
    """The ``attacks.recovery`` section of params.yaml."""

    k: Counts  # attack the unlearn stage's draws that forget these many classes
    draws: Count | None  # at most this many draws per k (each costs a reference); null: all
    shots: Naturals  # m labelled shots per forgotten class; 0: data-free
    # of CAPABILITIES; a run gets those that fit its model
    capabilities: Annotated[tuple[Capability, ...], NonEmpty()]
    steps: Count  # optimisation budget
    lr: Rate  # Adam learning rate of the attacked parameters
    eval_every: Count  # steps between points of the relearn curve (and candidate stops)
    relearn_threshold: Share  # test forgotten-class accuracy that counts as relearned
    anchor_shots: Natural  # labelled train samples per retained class, kept at their labels
    noise_inputs: Count  # data-free positives per class and step
    prompt_init: Annotated[str, OneOf(INITS, "prompt init")]  # normal | zeros
    ood_dataset: DatasetName | None  # registry name of the out-of-distribution probe; null: none
    ood_samples: Count  # inputs of each specificity probe (noise, OOD)
    batch_size: Count  # evaluation batch
    precision: Precision = "fp32"  # of the attack's steps and scoring: fp32 | bf16

    def __post_init__(self) -> None:
        if not isinstance(self.k, tuple) or not self.k or min(self.k) < 1:
            raise ValueError(f"k must be a non-empty list of forget-set sizes ≥ 1, got {self.k}")
        unknown = sorted(set(self.capabilities) - set(CAPABILITIES))
        if not self.capabilities or unknown:
            raise ValueError(
                f"capabilities must be a non-empty list of {CAPABILITIES}, got {self.capabilities}"
            )
        if self.prompt_init not in INITS:
            raise ValueError(f"prompt_init must be one of {INITS}, got {self.prompt_init!r}")
        if not self.shots or min(self.shots) < 0:
            raise ValueError(f"shots must be a non-empty list of counts ≥ 0, got {self.shots}")
        if self.steps < 1 or self.eval_every < 1 or self.lr <= 0:
            raise ValueError("steps and eval_every must be ≥ 1 and lr > 0")
        if not 0 < self.relearn_threshold <= 1:
            raise ValueError(f"relearn_threshold must lie in (0, 1], got {self.relearn_threshold}")
        if self.anchor_shots < 0 or self.noise_inputs < 1 or self.ood_samples < 1:
            raise ValueError("anchor_shots must be ≥ 0, noise_inputs and ood_samples ≥ 1")

    def capabilities_for(self, prompted: bool) -> tuple[str, ...]:
        """The listed capabilities that fit a model with (or without) prompts."""
        return tuple(c for c in self.capabilities if fits(c, prompted))


@dataclass(frozen=True)
class AttackData:
    """What the adversary and the evaluation read: shots and anchors from ``train``, the
    stopping step from ``val``, the scores from ``test``; ``ood``: another dataset's test
    images for ``ood_to_recovered`` (``None``: not measured)."""

    train: Split
    val: Split
    test: Split
    ood: Split | None = None


@dataclass(frozen=True)
class Trainable:
    """One parameter the adversary trains: its name in the model, and which rows along
    its first dimension move (``None``: all of it)."""

    name: str
    parameter: nn.Parameter
    rows: torch.Tensor | None


@dataclass(frozen=True)
class Outcome:
    """What the metrics keep of one attack: small and picklable, so a worker process
    returns it (``attack_saved``) where a model would be megabytes."""

    curve: list[tuple[int, float]]  # (step, forgotten-class test accuracy)
    val_curve: list[tuple[int, float]]  # (step, forgotten-class validation accuracy)
    best_step: int  # the adversary's stop: the validation argmax (ties: earliest)
    acc: float  # test forgotten-class accuracy at ``best_step``
    acc_end: float  # … after ``steps``
    retain_acc: float  # retained-class test accuracy at ``best_step``
    relearn_steps: int  # first step reaching ``relearn_threshold``; ``steps`` if none
    relearned: bool  # whether any curve point reached it
    retain_to_recovered: float  # retained-class test samples predicted as a forgotten class
    noise_to_recovered: float  # noise inputs predicted as a forgotten class
    ood_to_recovered: float | None  # OOD images predicted as a forgotten class; None: no set


@dataclass(frozen=True)
class Recovery(Outcome):
    model: PromptedClassifier  # the attacked copy at the chosen step

    def outcome(self) -> Outcome:
        """These numbers without the attacked model."""
        fields = {name: getattr(self, name) for name in Outcome.__dataclass_fields__}
        return Outcome(**fields)


def draw_shots(split: Split, classes: Sequence[int], m: int, seed: int) -> Split:
    """m samples of each class in ``classes``, the first m of a permutation seeded by
    (seed, class): the same shots for every model attacked, and m = 1 ⊂ m = 5."""
    rows = []
    for c in classes:
        where = np.flatnonzero(split.labels == c)
        if len(where) < m:
            raise ValueError(f"class {c} has {len(where)} train samples, fewer than m = {m}")
        rows.append(where[np.random.default_rng([seed, int(c)]).permutation(len(where))[:m]])
    picked = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    return Split(split.images[picked], split.labels[picked])


def random_inputs(like: Split, shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray:
    """Data-free inputs in ``like``'s modality: uniform uint8 images, or audio features
    drawn like normalised ones (mean 0, std 0.5, the AST recipe ``pfm.data`` follows)."""
    if like.data_type == "image":
        return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8).numpy()
    return (0.5 * torch.randn(shape, generator=generator)).to(torch.float16).numpy()


def unlabelled(inputs: np.ndarray) -> Split:
    """Inputs as a split with placeholder labels (deployment inference reads none)."""
    return Split(inputs, np.zeros(len(inputs), dtype=np.int64))


def noise_probe(like: Split, n: int, seed: int) -> Split:
    """n uniform-noise inputs in ``like``'s modality, seeded by (seed, ``PROBE_STREAM``):
    the same for every model attacked with ``seed``, apart from the attack's noise."""
    stream = np.random.SeedSequence([seed, PROBE_STREAM]).generate_state(1)[0]
    generator = torch.Generator().manual_seed(int(stream))
    return unlabelled(random_inputs(like, (n, *like.images.shape[1:]), generator))


def ood_probe(ood: Split, n: int, seed: int) -> Split:
    """n of ``ood``'s images (all, if it holds fewer), seeded by (seed, ``PROBE_STREAM``)."""
    rng = np.random.default_rng([seed, PROBE_STREAM])
    picked = np.sort(rng.permutation(len(ood))[:n])
    return unlabelled(ood.images[picked])


def ood_images(
    name: str | None, data_params: Mapping[str, Mapping], attacked: PreparedDataset
) -> Split | None:
    """The test split of dataset ``name``, built from its ``data.<name>`` params through the
    registry: the OOD probe of an image dataset. ``None`` where there is none to measure:
    ``name`` null, an audio dataset attacked, or ``name`` the attacked dataset itself."""
    if name is None or attacked.data_type != "image" or name == attacked.name:
        return None
    ood = build_dataset(name, data_params.get(name, {}))
    if ood.data_type != "image":
        raise ValueError(f"ood_dataset {name!r} holds {ood.data_type}; an image set is needed")
    return ood.splits["test"]


def class_rows(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """The bool mask of ``labels`` (one class id per row) that lie in ``classes``."""
    return torch.isin(labels, torch.tensor(list(classes), device=labels.device))


def with_fresh_prompts(
    model: PromptedClassifier, classes: Sequence[int], init: str, generator: torch.Generator
) -> PromptedClassifier:
    """``model`` with a fresh prompt row for each class of ``classes`` it has none for."""
    for c in classes:
        if c not in model.bank_classes:
            fresh = torch.randn(model.prompts.shape[1:], generator=generator)
            model = model.with_prompt(c, fresh if init == "normal" else torch.zeros_like(fresh))
    return model


def attackable(
    model: PromptedClassifier,
    classes: Sequence[int],
    capability: str,
    prompt_init: str,
    generator: torch.Generator,
) -> tuple[PromptedClassifier, list[Trainable]]:
    """A copy of ``model`` with everything frozen but what ``capability`` trains, and
    those parameters with their row masks. Refuses a capability of the other family."""
    if capability not in CAPABILITIES:
        raise ValueError(f"capability must be one of {CAPABILITIES}, got {capability!r}")
    if not fits(capability, model.spec.with_prompts):
        kind = "a prompt model" if model.spec.with_prompts else "a prompt-free model"
        raise ValueError(f"capability {capability!r} does not apply to {kind}")
    attacked = copy.deepcopy(model)
    adapters = [f"encoder.{n}" for n, p in attacked.encoder.named_parameters() if p.requires_grad]
    attacked.requires_grad_(False)
    if capability in ("prompt", "prompt_head"):
        attacked = with_fresh_prompts(attacked, classes, prompt_init, generator)
    masks = trained_masks(attacked, classes, capability, adapters)
    trained = [
        Trainable(name, parameter.requires_grad_(True), masks[name])
        for name, parameter in attacked.named_parameters()
        if name in masks
    ]
    return attacked, trained


def trained_masks(
    model: PromptedClassifier, classes: Sequence[int], capability: str, adapters: Sequence[str]
) -> dict[str, torch.Tensor | None]:
    """Parameter name → the rows ``capability`` trains in ``model`` (``None``: all)."""
    if capability == "prompt":
        return {"prompts": class_rows(model.prompt_classes, classes)}
    if capability == "prompt_head":
        every_class = torch.arange(model.num_classes, device=model.head.weight.device)
        head_rows = class_rows(every_class, classes)
        return {
            "prompts": class_rows(model.prompt_classes, classes),
            "head.weight": head_rows,
            "head.bias": head_rows,
        }
    head: dict[str, torch.Tensor | None] = {"head.weight": None, "head.bias": None}
    return head if capability == "head" else {**head, **dict.fromkeys(adapters)}


Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, labels)


@torch.no_grad()
def head_inputs(model: PromptedClassifier, pixel_values: torch.Tensor) -> torch.Tensor:
    """(B, D): what the head of a prompt-free ``model`` reads for ``pixel_values``, taken
    by a forward pre-hook on the head (no internal module is addressed)."""
    captured: list[torch.Tensor] = []
    handle = model.head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        model(pixel_values)
    finally:
        handle.remove()
    return captured[0]


class Forward:
    """The attacked copy as a function of stored inputs. When only a plain model's head
    trains (``cached``), everything before it is frozen and deterministic (eval mode), so
    each sample's head input is computed once and the steps run the head on those — the
    same optimisation at a fraction of the cost."""

    def __init__(
        self, model: PromptedClassifier, cached: bool, batch_size: int, generator: torch.Generator
    ) -> None:
        self.model = model
        self.cached = cached
        self.batch_size = batch_size
        self.generator = generator
        self.device = next(model.parameters()).device

    def batches(self, split: Split) -> list[Batch]:
        data = SplitTensors(split, self.model.input_size, self.device)
        return [
            (head_inputs(self.model, x) if self.cached else x, y)
            for x, y in data.batches(self.batch_size)
        ]

    def whole(self, split: Split) -> Batch | None:
        """``split`` as one batch; ``None`` for an empty split."""
        parts = self.batches(split)
        if not parts:
            return None
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])

    def logits(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.cached:
            masked = self.model.masked
            return self.model.head(x).masked_fill(masked, torch.finfo(x.dtype).min)
        return mode_logits(self.model, x, y, MODE, self.generator)

    @torch.no_grad()
    def predict(self, data: list[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted classes, labels) over every batch of ``data``."""
        predicted = [self.logits(x, y).argmax(dim=1) for x, y in data]
        return torch.cat(predicted), torch.cat([y for _, y in data])

    def accuracy(self, data: list[Batch]) -> float:
        predicted, labels = self.predict(data)
        return float((predicted == labels).float().mean())

    def shares(self, data: list[Batch], classes: Sequence[int]) -> float:
        """The fraction of ``data`` predicted as one of ``classes``."""
        return recovered_share(self.predict(data)[0], classes)


def recovered_share(predicted: torch.Tensor, classes: Sequence[int]) -> float:
    """The fraction of ``predicted`` classes that are one of ``classes``."""
    return float(class_rows(predicted, classes).float().mean())


def chosen_step(val_curve: Sequence[tuple[int, float]]) -> int:
    """The step of the best validation accuracy, the earliest among ties."""
    best = max(acc for _, acc in val_curve)
    return next(step for step, acc in val_curve if acc == best)


def relearn_time(
    curve: Sequence[tuple[int, float]], threshold: float, steps: int
) -> tuple[int, bool]:
    """(the first step whose accuracy reaches ``threshold``, True), or (``steps``, False)."""
    return next(((step, True) for step, acc in curve if acc >= threshold), (steps, False))


def forgotten_batches(
    forward: Forward, split: Split, classes: Sequence[int], name: str
) -> list[Batch]:
    """The samples of ``classes`` in ``split`` as batches; an error when there are none."""
    batches = forward.batches(class_slice(split, classes, True))
    if not batches:
        raise ValueError(f"the {name} split has no sample of classes {list(classes)}")
    return batches


def restore(trained: Sequence[Trainable], state: Mapping[str, torch.Tensor]) -> None:
    """Put the kept values ``state`` back into the trained parameters."""
    with torch.no_grad():
        for t in trained:
            t.parameter.copy_(state[t.name])


def recover(
    model: PromptedClassifier,
    data: AttackData,
    classes: tuple[int, ...],
    m: int,
    capability: str,
    params: RecoveryParams,
    seed: int,
) -> Recovery:
    """The attack (module docstring) under ``capability`` with m shots per class in
    ``classes`` on a copy of ``model``; seed-deterministic, and the same shots, noise,
    fresh rows and probes for every model given the same seed. The trained parameters
    are kept at each validation improvement, so the chosen step is scored without a
    second run, and the returned copy holds them."""
    attacked, trained = attackable(
        model, classes, capability, params.prompt_init, torch.Generator().manual_seed(seed)
    )
    attacked.eval()
    generator = torch.Generator().manual_seed(seed + 1)  # noise: the same for every model
    forward = Forward(attacked, capability == "head", params.batch_size, generator)
    retained = [c for c in range(model.num_classes) if c not in classes]
    anchors = forward.whole(draw_shots(data.train, retained, params.anchor_shots, seed))
    shots = forward.whole(draw_shots(data.train, classes, m, seed))
    val = forgotten_batches(forward, data.val, classes, "validation")
    test = forgotten_batches(forward, data.test, classes, "test")
    noise_labels = np.repeat(np.array(classes, dtype=np.int64), params.noise_inputs)
    noise_shape = (len(noise_labels), *data.train.images.shape[1:])

    def positives() -> Batch | None:
        if m > 0:
            return shots
        return forward.whole(Split(random_inputs(data.train, noise_shape, generator), noise_labels))

    optimizer = torch.optim.Adam([t.parameter for t in trained], lr=params.lr)
    curve: list[tuple[int, float]] = []
    val_curve: list[tuple[int, float]] = []
    kept: dict[str, torch.Tensor] = {}

    def record(step: int) -> None:
        val_curve.append((step, forward.accuracy(val)))
        curve.append((step, forward.accuracy(test)))
        if val_curve[-1][1] > max((acc for _, acc in val_curve[:-1]), default=-1.0):
            kept.update({t.name: t.parameter.detach().clone() for t in trained})

    record(0)
    for step in range(1, params.steps + 1):
        x, y = positives()
        loss = F.cross_entropy(forward.logits(x, y), y)
        if anchors is not None:
            loss = loss + F.cross_entropy(forward.logits(*anchors), anchors[1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for t in trained:
            if t.rows is not None:  # only the attacked rows move (Adam: zero grad → no step)
                t.parameter.grad[~t.rows] = 0
        optimizer.step()
        if step % params.eval_every == 0 or step == params.steps:
            record(step)
    restore(trained, kept)
    best = chosen_step(val_curve)
    relearn_steps, relearned = relearn_time(curve, params.relearn_threshold, params.steps)
    return Recovery(
        curve=curve,
        val_curve=val_curve,
        best_step=best,
        acc=dict(curve)[best],
        acc_end=curve[-1][1],
        relearn_steps=relearn_steps,
        relearned=relearned,
        **specificity(forward, data, classes, params.ood_samples, seed),
        model=attacked,
    )


def specificity(
    forward: Forward, data: AttackData, classes: Sequence[int], samples: int, seed: int
) -> dict[str, float | None]:
    """Where the model now sends inputs of no forgotten class: retained-class test accuracy
    and the shares of retained-class test samples, ``samples`` noise inputs and (if
    ``data.ood``) ``samples`` OOD images predicted as a forgotten class."""
    predicted, labels = forward.predict(forward.batches(class_slice(data.test, classes, False)))
    noise = forward.batches(noise_probe(data.train, samples, seed))
    ood = None if data.ood is None else forward.batches(ood_probe(data.ood, samples, seed))
    return {
        "retain_acc": float((predicted == labels).float().mean()),
        "retain_to_recovered": recovered_share(predicted, classes),
        "noise_to_recovered": forward.shares(noise, classes),
        "ood_to_recovered": None if ood is None else forward.shares(ood, classes),
    }


def attack_every_shot(
    model: PromptedClassifier,
    data: AttackData,
    classes: tuple[int, ...],
    capability: str,
    params: RecoveryParams,
    seed: int,
) -> dict[int, Outcome]:
    """The attack under ``capability`` on ``model`` at every m of ``params.shots``."""
    with autocast(next(model.parameters()).device, params.precision):
        return {
            m: recover(model, data, classes, m, capability, params, seed).outcome()
            for m in params.shots
        }


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


def unit_fields(attacked: Outcome, reference: Outcome) -> dict[str, float | int]:
    """The numbers of one (draw, capability, m) unit: the attack on the unlearned model,
    the same attack on the reference, and their difference (``residual``)."""
    fields: dict[str, float | int] = {
        "acc": attacked.acc,
        "acc_end": attacked.acc_end,
        "best_step": attacked.best_step,
        "retain_acc": attacked.retain_acc,
        "reference_acc": reference.acc,
        "residual": attacked.acc - reference.acc,
        "relearn_steps": attacked.relearn_steps,
        "relearned": float(attacked.relearned),
        "retain_to_recovered": attacked.retain_to_recovered,
        "noise_to_recovered": attacked.noise_to_recovered,
        "reference_retain_to_recovered": reference.retain_to_recovered,
    }
    if attacked.ood_to_recovered is not None:
        fields["ood_to_recovered"] = attacked.ood_to_recovered
    return fields


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


def summarise(results: Sequence[DrawResult], params: RecoveryParams) -> tuple[dict, Curves]:
    """A run's metrics and relearn curves from its (draw, capability) results.

    Metrics: ``recovery.<cap>.k<k>.m<m>.<field>.{mean,std}`` over the attacked draws,
    ``recovery.steps``, ``recovery.draws`` (attacked draws, every k) and ``units``: one
    record per (draw, capability, m), ``{"classes", "k", "capability", "m", <field>…}``,
    from which ``pfm.reporting.aggregate`` draws confidence intervals. Curves: ``<cap> k<k> m<m>``
    (mean over the draws) and ``<cap> k<k> m<m> reference``."""
    units: Units = []
    grouped: dict[tuple[str, int, int], list[dict[str, float | int]]] = {}
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for result in results:
        k = len(result.classes)
        for m in params.shots:
            attacked, reference = result.attacked[m], result.reference[m]
            fields = unit_fields(attacked, reference)
            grouped.setdefault((result.capability, k, m), []).append(fields)
            head = {"classes": list(result.classes), "k": k, "capability": result.capability}
            units.append({**head, "m": m, **fields})
            name = unit_name(result.capability, k, m)
            curves.setdefault(name, []).append(attacked.curve)
            curves.setdefault(f"{name} reference", []).append(reference.curve)
    metrics: dict[str, object] = {
        "recovery.steps": params.steps,
        "recovery.draws": len({r.classes for r in results}),
    }
    for (capability, k, m), records in grouped.items():
        prefix = f"recovery.{capability}.k{k}.m{m}."
        metrics.update(pool(records, prefix))
    metrics["units"] = units
    return metrics, {name: mean_curve(c) for name, c in curves.items()}
