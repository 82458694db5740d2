"""The one evaluation path: accuracy under an inference mode, and the forget-k protocol.

Forget-k (as in the authors' code): for k in {1, ⌊C/2⌋, C−1}, every combination of k
classes is forgotten in turn and the test split is classified with ``full_bank``
inference, argmax over all C logits; we report accuracy on forgotten-class and on
retained-class samples, mean and population std over the sets. ``max_sets`` caps the
number of sets per k with seeded sampling (reported in the keys). *How* a set is
forgotten is a callable (``pfm.unlearn.unlearner``): the prompt model deletes prompts, a
baseline trains — the protocol, the metric keys and the cost keys are the same for all.

Where the unlearned models of a k differ only in their prompts, head and output mask
(the prompt model's forget: every model's encoder is equal, value for value, to the
first one's), their sets are scored together: one pass over each split, every batch run
once through the encoder for all sets (``PromptedClassifier.bank_logits``), instead of
one pass per set. The predictions are those of set-by-set scoring (tested); the
``batch_size`` then counts the sequences of a forward, images × sets. Any other model is
scored set by set, as before.
"""

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pfm.batches import SplitTensors
from pfm.cost import NUMERIC, CostRecord, cost_metrics
from pfm.models.prompted import Bank, PromptedClassifier
from pfm.modes import mode_logits
from pfm.precision import autocast

EXHAUSTIVE_LIMIT = 100_000

# How a forget set is forgotten: classes → (unlearned model, its cost).
Unlearner = Callable[[tuple[int, ...]], tuple[PromptedClassifier, CostRecord]]


@torch.inference_mode()  # scoring only: what leaves is an array, never a tensor autograd sees
def predict(
    model: PromptedClassifier,
    data: SplitTensors,
    mode: str,
    batch_size: int,
    seed: int = 0,
    precision: str = "fp32",
) -> np.ndarray:
    """Predicted class per sample under ``mode`` (seeded: random modes repeat exactly)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    with autocast(data.device, precision):
        predictions = [
            mode_logits(model, x, y, mode, generator).argmax(dim=1).cpu()
            for x, y in data.batches(batch_size)
        ]
    model.train(was_training)
    return torch.cat(predictions).numpy() if predictions else np.empty(0, dtype=np.int64)


def mode_accuracies(
    model: PromptedClassifier,
    data: SplitTensors,
    modes: Sequence[str],
    batch_size: int,
    seed: int,
    precision: str = "fp32",
) -> dict[str, float]:
    labels = data.labels.numpy()
    return {
        mode: float((predict(model, data, mode, batch_size, seed, precision) == labels).mean())
        for mode in modes
    }


def k_values(num_classes: int) -> list[int]:
    return sorted({1, num_classes // 2, num_classes - 1} - {0})


def check_k(num_classes: int, k: int) -> None:
    """Refuse a forget-set size that leaves no class forgotten or none retained."""
    if not 1 <= k < num_classes:
        raise ValueError(f"k must satisfy 1 ≤ k < C = {num_classes}, got k = {k}")


def check_cap(num_classes: int, k: int, max_sets: int | None) -> None:
    """Refuse a cap ``forget_sets`` cannot meet: below 1, or none (or one ≥ C-choose-k)
    where all C-choose-k sets are too many to enumerate. A cap above C-choose-k is no
    error: it takes every set, as ``null`` does."""
    if max_sets is not None and max_sets < 1:
        raise ValueError(f"max_sets must be ≥ 1 or null, got {max_sets}")
    total = math.comb(num_classes, k)
    if (max_sets is None or max_sets >= total) and total > EXHAUSTIVE_LIMIT:
        raise ValueError(f"C({num_classes},{k}) = {total} sets is too many; set max_sets")


def forget_sets(
    num_classes: int, k: int, max_sets: int | None, seed: int
) -> tuple[list[tuple[int, ...]], bool]:
    """The class sets to forget for this k, and whether they are all C-choose-k of them.

    Sampling is seeded by (seed, k), so every method evaluated with the same seed sees
    the same sets."""
    check_k(num_classes, k)
    check_cap(num_classes, k, max_sets)
    if max_sets is None or max_sets >= math.comb(num_classes, k):
        return list(itertools.combinations(range(num_classes), k)), True
    rng = np.random.default_rng([seed, k])
    chosen: set[tuple[int, ...]] = set()
    while len(chosen) < max_sets:
        chosen.add(tuple(sorted(rng.choice(num_classes, size=k, replace=False).tolist())))
    return sorted(chosen), False


def sets_per_k(
    ks: Sequence[int], max_sets: int | None | Sequence[int | None]
) -> dict[int, int | None]:
    """k → its cap on forget sets: one cap for every k, or one per k in ``ks``'s order
    (k = 1 may take more sets than a k whose baselines cost more draws)."""
    if max_sets is None or isinstance(max_sets, int):
        return {k: max_sets for k in ks}
    caps = list(max_sets)
    if len(caps) != len(ks):
        raise ValueError(f"max_sets must be one cap or one per k (k = {list(ks)}), got {caps}")
    return dict(zip(ks, caps, strict=True))


# k → (its forget sets, whether they are all C-choose-k)
ForgetPlan = dict[int, tuple[list[tuple[int, ...]], bool]]


def forget_plan(
    num_classes: int,
    ks: Sequence[int],
    max_sets: int | None | Sequence[int | None],
    seed: int,
) -> ForgetPlan:
    """The seeded forget sets of every k: the draws every method of a seed shares."""
    caps = sets_per_k(ks, max_sets)
    return {k: forget_sets(num_classes, k, caps[k], seed) for k in ks}


# Other versions of an unlearned model worth scoring beside it, by label (PI-Prefix's
# artifact beside the model its authors' inference evaluates): model → {label: model}.
Variants = Callable[[PromptedClassifier], Mapping[str, PromptedClassifier]]


def split_scores(
    predicted: np.ndarray, labels: np.ndarray, classes: tuple[int, ...]
) -> tuple[float, float]:
    """(forgotten-class, retained-class) accuracy of ``predicted`` (NaN for a side with
    no sample)."""
    correct = predicted == labels
    in_set = np.isin(labels, classes)
    return float(correct[in_set].mean()), float(correct[~in_set].mean())


def split_accuracies(
    model: PromptedClassifier,
    data: SplitTensors,
    classes: tuple[int, ...],
    seed: int,
    batch_size: int,
    precision: str = "fp32",
) -> tuple[float, float]:
    """(forgotten-class, retained-class) accuracy under deployment inference."""
    predicted = predict(model, data, "full_bank", batch_size, seed, precision)
    return split_scores(predicted, data.labels.numpy(), classes)


class SetBatch:
    """The unlearned models of one k that can be scored together: the first prompted
    model's encoder, and the ``Bank`` of every model that shares it (by value) and holds
    as many prompts — kept without their own encoder copies, so S forget sets cost S
    banks of memory, not S models."""

    def __init__(self) -> None:
        self.encoder: PromptedClassifier | None = None
        self.banks: list[Bank] = []
        self.classes: list[tuple[int, ...]] = []
        self.units: list[int] = []

    def add(self, model: PromptedClassifier, classes: tuple[int, ...], unit: int) -> bool:
        """Keep ``model``'s bank for scoring with the others; False when it cannot join."""
        if not isinstance(model, PromptedClassifier) or model.training:
            return False
        bank = model.bank()
        if self.encoder is None:
            self.encoder = model
        elif not self.encoder.shares_encoder(model) or _size(bank) != _size(self.banks[0]):
            return False
        self.banks.append(bank)
        self.classes.append(classes)
        self.units.append(unit)
        return True

    @torch.inference_mode()
    def scores(
        self, data: SplitTensors, batch_size: int, precision: str
    ) -> list[tuple[int, tuple[float, float]]]:
        """(unit, its forgotten- and retained-class accuracy on ``data``) for every kept
        set: ``batch_size`` sequences a forward, ⌊batch_size / sets⌋ images of every set
        (sets beyond ``batch_size`` take further passes)."""
        if self.encoder is None:
            return []
        labels = data.labels.numpy()
        results = []
        for start in range(0, len(self.banks), batch_size):
            banks = self.banks[start : start + batch_size]
            images = max(1, batch_size // len(banks))
            with autocast(data.device, precision):
                predicted = [
                    self.encoder.bank_logits(x, banks).argmax(dim=2).cpu()
                    for x, _ in data.batches(images)
                ]
            per_set = (  # (sets, N)
                torch.cat(predicted, dim=1).numpy()
                if predicted
                else np.empty((len(banks), 0), dtype=np.int64)
            )
            for offset, row in enumerate(per_set):
                index = start + offset
                scores = split_scores(row, labels, self.classes[index])
                results.append((self.units[index], scores))
        return results


def _size(bank: Bank) -> int:
    return 0 if bank.tokens is None else len(bank.tokens)


def unit_record(
    classes: tuple[int, ...],
    scores: Mapping[str, tuple[float, float]],
    cost: CostRecord,
) -> dict[str, Any]:
    """One forget set's unit: its (forgotten, retained) accuracies by key prefix (test
    unprefixed, other splits as ``<split>.``, the model's variants as ``<variant>.`` and
    ``<variant>.<split>.``) and its cost."""
    record: dict[str, Any] = {"classes": list(classes), "k": len(classes)}
    for prefix, (forget, retain) in scores.items():
        record[f"{prefix}forget_acc"] = forget
        record[f"{prefix}retain_acc"] = retain
    record.update({f"cost.{name}": float(getattr(cost, name)) for name in NUMERIC})
    return record


UNIT_IDENTITY = ("classes", "k")  # what names a unit; every other field is a measurement


def pool(per_draw: Sequence[Mapping[str, float]], prefix: str = "") -> dict[str, float]:
    """``<prefix><key>.mean`` and ``.std`` (population, as the forget-k protocol) over the
    draws, for every key the draws share: the per-run summary beside the units (forget-k
    here, the attacks in ``pfm.attacks``), the shape ``pfm.reporting.aggregate`` pools
    over seeds."""
    if not per_draw:
        raise ValueError("no draw to pool")
    keys = [key for key in per_draw[0] if all(key in d for d in per_draw)]
    pooled: dict[str, float] = {}
    for key in keys:
        values = np.array([d[key] for d in per_draw], dtype=float)
        pooled[f"{prefix}{key}.mean"] = float(values.mean())
        pooled[f"{prefix}{key}.std"] = float(values.std())
    return pooled


def forget_k(
    unlearn: Unlearner,
    test: SplitTensors,
    plan: ForgetPlan,
    seed: int,
    batch_size: int,
    val: SplitTensors | None = None,
    variants: Variants | None = None,
    precision: str = "fp32",
    batch_sets: bool = True,
) -> dict[str, Any]:
    """Every k and forget set of ``plan``: flat metrics ``k{k}.forget_acc.mean`` etc.
    (test), ``k{k}.val.forget_acc.*`` (validation, where recipes are chosen), each of
    ``variants``' models alike (``k{k}.<variant>.forget_acc.*``, ``.val.`` within),
    ``k{k}.cost.<field>.*`` (a baseline's cost grows with the data it touches), the
    overall ``cost.<field>.mean`` and ``cost.unlearn_seconds.max``, and ``units``: one
    record per forget set (``unit_record``), from which the aggregate draws its
    confidence intervals. ``batch_sets``: score the sets of a k together where the
    models allow it (module docstring); False scores every set on its own."""
    splits = {"": test} if val is None else {"": test, "val.": val}
    metrics: dict[str, Any] = {}
    costs: list[CostRecord] = []
    units: list[dict[str, Any]] = []
    for k, (sets, exhaustive) in plan.items():
        together = SetBatch()
        scored: list[tuple[tuple[int, ...], dict[str, tuple[float, float]], CostRecord]] = []
        for classes in tqdm(sets, desc=f"forget k={k}", unit="set", leave=False, disable=None):
            forgotten, cost = unlearn(classes)
            costs.append(cost)
            scores: dict[str, tuple[float, float]] = dict.fromkeys(splits, (math.nan, math.nan))
            if not (batch_sets and together.add(forgotten, classes, len(scored))):
                for prefix, data in splits.items():
                    scores[prefix] = split_accuracies(
                        forgotten, data, classes, seed, batch_size, precision
                    )
            if variants is not None:
                for label, variant in variants(forgotten).items():
                    for prefix, data in splits.items():
                        scores[f"{label}.{prefix}"] = split_accuracies(
                            variant, data, classes, seed, batch_size, precision
                        )
            scored.append((classes, scores, cost))
        for prefix, data in splits.items():
            for unit, accuracies in together.scores(data, batch_size, precision):
                scored[unit][1][prefix] = accuracies
        k_units = [unit_record(*entry) for entry in scored]
        measured = [{f: v for f, v in u.items() if f not in UNIT_IDENTITY} for u in k_units]
        metrics.update(pool(measured, f"k{k}."))
        metrics.update({f"k{k}.sets": len(sets), f"k{k}.exhaustive": int(exhaustive)})
        units += k_units
    metrics.update(cost_metrics(costs))
    metrics["cost.unlearn_seconds.max"] = max(c.unlearn_seconds for c in costs)
    metrics["units"] = units
    return metrics


def transfer_metrics(
    model: PromptedClassifier,
    unlearn: Unlearner,
    data: SplitTensors,
    max_sets: int | None,
    seed: int,
    batch_size: int,
    precision: str = "fp32",
) -> dict[str, float]:
    """An extra test split of another origin (real recordings for a synthesised set): the
    no-forget ``full_bank`` accuracy and forget-k at k = 1 on the same sets as ``test``
    (forget accuracy is NaN for a set whose class the split has no sample of)."""
    modes = ("full_bank",)
    accuracy = mode_accuracies(model, data, modes, batch_size, seed, precision)["full_bank"]
    plan = forget_plan(model.num_classes, [1], max_sets, seed)
    forgetting = forget_k(unlearn, data, plan, seed, batch_size, precision=precision)
    with_samples = set(data.labels.tolist())
    keep = ("k1.forget_acc.mean", "k1.forget_acc.std", "k1.retain_acc.mean", "k1.retain_acc.std")
    return {
        "no_forget.full_bank.acc": accuracy,
        "classes": len(with_samples),
        **{key: forgetting[key] for key in keep},
    }
