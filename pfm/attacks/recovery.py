"""Adversarial prompt recovery: can an adversary holding the unlearned model bring a
forgotten class back with a few labelled shots and a small optimisation budget?

The adversary gets the unlearned model and, per forgotten class, m labelled train
shots (m = 0: none — the data-free variant). Against the prompt model it adds a fresh
prompt row for each forgotten class (``PromptedClassifier.with_prompt``; N(0, 1) as at
training, or zeros) and optimises those rows and nothing else; a row the model still
holds for the class (a prompt that was not really deleted) is where it starts instead —
whatever the checkpoint keeps is the adversary's. Against a plain baseline, which has no
prompt to add, it fine-tunes the head (``head``) or the head and the LoRA adapters
(``head_lora``) for the same budget, so the comparison is like with like: the smallest
trainable part that can rebind the class.

Objective per step, full-batch Adam at ``lr`` under deployment inference (``full_bank``;
model in eval mode, so no dropout): cross-entropy of the positives toward their
forgotten class, plus cross-entropy of ``anchor_shots`` labelled train samples per
retained class toward their true labels — without the anchor, "predict the forgotten
class for everything" would score perfect recovery on any model. Positives: the m shots
per class (the same nested, seeded shots for every model: m = 1 ⊂ m = 5); data-free
(m = 0): ``noise_inputs`` fresh uniform-noise images per class each step, labelled with
the class — maximising its logit on inputs that carry no class signal, so what the
prompt learns to bind is whatever the model still holds of the class. Retained-class
inputs are not used as data-free positives because they are the anchor's.

Metrics: forgotten-class test accuracy after ``steps`` (``acc``), the relearn curve
(that accuracy every ``eval_every`` steps, from step 0), retained-class test accuracy
after the attack (``retain_acc``: what the recovery cost the adversary), and the same
attack on a reference model that never saw the class (``reference_acc``): residual
knowledge = acc − reference_acc. In the spirit of the relearning evaluations of
Lynch et al. ("Eight Methods to Evaluate Robust Unlearning in LLMs", 2024) and Hu et al.
("Jogging the Memory of Unlearned LLMs Through Targeted Relearning Attacks", 2024), where
a model that only hides knowledge relearns it faster than one that never had it.
"""

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pfm.attacks.draws import pool
from pfm.batches import SplitTensors
from pfm.data.prepared import Split
from pfm.models.checkpoint import load_model
from pfm.models.prompted import PromptedClassifier
from pfm.modes import mode_logits
from pfm.unlearn.data import class_slice

MODE = "full_bank"  # deployment inference, during the attack and its evaluation
TARGETS = ("head", "head_lora")  # what the attack trains in a plain baseline
INITS = ("normal", "zeros")  # a fresh prompt row: N(0, 1) as at training, or zeros


@dataclass(frozen=True)
class RecoveryParams:
    """The ``attacks.recovery`` section of params.yaml."""

    k: int  # attack the unlearn stage's draws that forget this many classes
    draws: int | None  # at most this many of them (each costs a reference model); null: all
    shots: tuple[int, ...]  # m labelled shots per forgotten class; 0: data-free
    steps: int  # optimisation budget
    lr: float  # Adam learning rate of the attacked parameters
    eval_every: int  # steps between points of the relearn curve
    anchor_shots: int  # labelled train samples per retained class, kept at their labels
    noise_inputs: int  # data-free positives per class and step
    baseline_target: str  # head | head_lora
    prompt_init: str  # normal | zeros
    batch_size: int  # evaluation batch

    def __post_init__(self) -> None:
        if self.baseline_target not in TARGETS:
            raise ValueError(
                f"baseline_target must be one of {TARGETS}, got {self.baseline_target!r}"
            )
        if self.prompt_init not in INITS:
            raise ValueError(f"prompt_init must be one of {INITS}, got {self.prompt_init!r}")
        if not self.shots or min(self.shots) < 0:
            raise ValueError(f"shots must be a non-empty list of counts ≥ 0, got {self.shots}")
        if self.steps < 1 or self.eval_every < 1 or self.lr <= 0:
            raise ValueError("steps and eval_every must be ≥ 1 and lr > 0")
        if self.anchor_shots < 0 or self.noise_inputs < 1:
            raise ValueError("anchor_shots must be ≥ 0 and noise_inputs ≥ 1")


@dataclass(frozen=True)
class Outcome:
    """What the metrics keep of one attack: small and picklable, so a worker process
    returns it (``attack_saved``) where a model would be megabytes."""

    curve: list[tuple[int, float]]  # (step, forgotten-class test accuracy)
    acc: float  # the curve's last point: after ``steps``
    retain_acc: float  # retained-class test accuracy after the attack


@dataclass(frozen=True)
class Recovery(Outcome):
    model: PromptedClassifier  # the attacked copy, recovered prompt included

    def outcome(self) -> Outcome:
        """These numbers without the attacked model."""
        return Outcome(self.curve, self.acc, self.retain_acc)


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


def attackable(
    model: PromptedClassifier,
    classes: Sequence[int],
    target: str,
    prompt_init: str,
    generator: torch.Generator,
) -> tuple[PromptedClassifier, list[tuple[nn.Parameter, torch.Tensor | None]]]:
    """A copy of ``model`` with everything frozen but what the adversary trains, and
    those parameters, each with a row mask (``None``: every element trains)."""
    attacked = copy.deepcopy(model)
    adapters = [p for p in attacked.encoder.parameters() if p.requires_grad]
    attacked.requires_grad_(False)
    if model.spec.with_prompts:
        for c in classes:
            if c not in attacked.bank_classes:
                shape = attacked.prompts.shape[1:]
                fresh = torch.randn(shape, generator=generator)
                start = fresh if prompt_init == "normal" else torch.zeros_like(fresh)
                attacked = attacked.with_prompt(c, start)
        attacked.prompts.requires_grad_(True)
        forgotten = torch.tensor(list(classes), device=attacked.prompt_classes.device)
        rows = torch.isin(attacked.prompt_classes, forgotten)
        return attacked, [(attacked.prompts, rows)]
    trained = list(attacked.head.parameters()) + (adapters if target == "head_lora" else [])
    for parameter in trained:
        parameter.requires_grad_(True)
    return attacked, [(p, None) for p in trained]


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


def recover(
    model: PromptedClassifier,
    train: Split,
    test: Split,
    classes: tuple[int, ...],
    m: int,
    params: RecoveryParams,
    seed: int,
) -> Recovery:
    """The attack (module docstring) with m shots per class in ``classes`` on a copy of
    ``model``; seed-deterministic, and the same shots, noise and fresh rows for every
    model given the same seed.

    When only a plain model's head trains, everything before it is frozen and
    deterministic (eval mode), so each sample's head input is computed once and the
    steps train the head on those — the same optimisation at a fraction of the cost."""
    device = next(model.parameters()).device
    attacked, trained = attackable(
        model,
        classes,
        params.baseline_target,
        params.prompt_init,
        torch.Generator().manual_seed(seed),
    )
    generator = torch.Generator().manual_seed(seed + 1)  # noise: the same for every model
    attacked.eval()
    cached = not model.spec.with_prompts and params.baseline_target == "head"

    def batches(split: Split) -> list[Batch]:
        out = []
        for x, y in SplitTensors(split, model.input_size, device).batches(params.batch_size):
            out.append((head_inputs(attacked, x) if cached else x, y))
        return out

    def whole(split: Split) -> Batch | None:
        parts = batches(split)
        if not parts:
            return None
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])

    def logits(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if cached:
            return attacked.head(x).masked_fill(attacked.masked, torch.finfo(x.dtype).min)
        return mode_logits(attacked, x, y, MODE, generator)

    @torch.no_grad()
    def accuracy(data: list[Batch]) -> float:
        correct = sum(int((logits(x, y).argmax(dim=1) == y).sum()) for x, y in data)
        return correct / sum(len(y) for _, y in data)

    retained = [c for c in range(model.num_classes) if c not in classes]
    anchors = whole(draw_shots(train, retained, params.anchor_shots, seed))
    shots = whole(draw_shots(train, classes, m, seed))
    forget_test = batches(class_slice(test, classes, True))
    if not forget_test:
        raise ValueError(f"the test split has no sample of classes {list(classes)}")
    noise_labels = np.repeat(np.array(classes, dtype=np.int64), params.noise_inputs)
    noise_shape = (len(noise_labels), *train.images.shape[1:])

    def positives() -> Batch | None:
        if m > 0:
            return shots
        return whole(Split(random_inputs(train, noise_shape, generator), noise_labels))

    optimizer = torch.optim.Adam([p for p, _ in trained], lr=params.lr)
    curve = [(0, accuracy(forget_test))]
    for step in range(1, params.steps + 1):
        x, y = positives()
        loss = F.cross_entropy(logits(x, y), y)
        if anchors is not None:
            loss = loss + F.cross_entropy(logits(*anchors), anchors[1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for parameter, rows in trained:
            if rows is not None:  # only the attacked prompt rows move (Adam: zero grad → no step)
                parameter.grad[~rows] = 0
        optimizer.step()
        if step % params.eval_every == 0 or step == params.steps:
            curve.append((step, accuracy(forget_test)))
    retain_acc = accuracy(batches(class_slice(test, classes, False)))
    return Recovery(curve, curve[-1][1], retain_acc, attacked)


def random_inputs(like: Split, shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray:
    """Data-free inputs in ``like``'s modality: uniform uint8 images, or audio features
    drawn like normalised ones (mean 0, std 0.5, the AST recipe ``pfm.data`` follows)."""
    if like.data_type == "image":
        return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8).numpy()
    return (0.5 * torch.randn(shape, generator=generator)).to(torch.float16).numpy()


def residual_metrics(attacked: Outcome, reference: Outcome, m: int) -> dict[str, float]:
    """Flat keys of one draw at m shots: the attack on the unlearned model beside the
    same attack on the never-seen reference, and their difference."""
    return {
        f"recovery.m{m}.acc": attacked.acc,
        f"recovery.m{m}.retain_acc": attacked.retain_acc,
        f"recovery.m{m}.reference_acc": reference.acc,
        f"recovery.m{m}.residual": attacked.acc - reference.acc,
    }


def mean_curve(curves: Sequence[list[tuple[int, float]]]) -> list[dict[str, float]]:
    """Pointwise mean over draws of curves that share their steps, as the records
    ``pfm.aggregate.read_relearn_curves`` reads."""
    steps = [s for s, _ in curves[0]]
    if any([s for s, _ in c] != steps for c in curves):
        raise ValueError("relearn curves of one run must share their steps")
    accs = np.array([[a for _, a in c] for c in curves])  # (draws, points)
    return [{"step": s, "acc": float(a)} for s, a in zip(steps, accs.mean(axis=0), strict=True)]


def attack_every_shot(
    model: PromptedClassifier,
    train: Split,
    test: Split,
    classes: tuple[int, ...],
    params: RecoveryParams,
    seed: int,
) -> dict[int, Outcome]:
    """The attack on ``model`` at every m of ``params.shots``."""
    return {
        m: recover(model, train, test, classes, m, params, seed).outcome() for m in params.shots
    }


def attack_saved(
    path: Path,
    classes: tuple[int, ...],
    seed: int,
    train: Split,
    test: Split,
    params: RecoveryParams,
    device: torch.device,
) -> dict[int, Outcome]:
    """``attack_every_shot`` on the model saved at ``path``."""
    model = load_model(path).to(device)
    return attack_every_shot(model, train, test, classes, params, seed)


# per m: the attack on an unlearned model's draw, and the same attack on its never-seen
# reference (the very same outcomes for ``retrain``, its own reference)
Draw = tuple[Mapping[int, Outcome], Mapping[int, Outcome]]


def summarise(
    draws: Sequence[Draw], params: RecoveryParams, reference_curves: bool
) -> tuple[dict[str, float], dict[str, list[dict[str, float]]]]:
    """Metrics and relearn curves of a run's attacked draws. Keys
    ``recovery.m<m>.{acc, retain_acc, reference_acc, residual}.{mean, std}`` over the
    draws; curves ``m<m>`` (mean over draws) and, with ``reference_curves``, the
    reference's as ``m<m> never-seen``."""
    per_draw: list[dict[str, float]] = []
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for attacked, reference in draws:
        record: dict[str, float] = {}
        for m in params.shots:
            record.update(residual_metrics(attacked[m], reference[m], m))
            curves.setdefault(f"m{m}", []).append(attacked[m].curve)
            if reference_curves:
                curves.setdefault(f"m{m} never-seen", []).append(reference[m].curve)
        per_draw.append(record)
    metrics = {"recovery.draws": len(draws), "recovery.steps": params.steps, **pool(per_draw)}
    return metrics, {name: mean_curve(c) for name, c in curves.items()}
