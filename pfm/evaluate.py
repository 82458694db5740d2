"""The one evaluation path: accuracy under an inference mode, and the forget-k protocol.

Forget-k (as in the authors' code): for k in {1, ⌊C/2⌋, C−1}, every combination of k
classes is forgotten in turn and the test split is classified with ``full_bank``
inference, argmax over all C logits; we report accuracy on forgotten-class and on
retained-class samples, mean and population std over the sets. ``max_sets`` caps the
number of sets per k with seeded sampling (reported in the keys). *How* a set is
forgotten is a callable (``pfm.unlearn.unlearner``): the prompt model deletes prompts, a
baseline trains — the protocol, the metric keys and the cost keys are the same for all.
"""

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from pfm.batches import SplitTensors
from pfm.cost import CostRecord, cost_metrics
from pfm.models.prompted import PromptedClassifier
from pfm.modes import mode_logits

EXHAUSTIVE_LIMIT = 100_000

# How a forget set is forgotten: classes → (unlearned model, its cost).
Unlearner = Callable[[tuple[int, ...]], tuple[PromptedClassifier, CostRecord]]


@torch.no_grad()
def predict(
    model: PromptedClassifier,
    data: SplitTensors,
    mode: str,
    batch_size: int,
    seed: int = 0,
) -> np.ndarray:
    """Predicted class per sample under ``mode`` (seeded: random modes repeat exactly)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    predictions = [
        mode_logits(model, x, y, mode, generator).argmax(dim=1).cpu()
        for x, y in data.batches(batch_size)
    ]
    model.train(was_training)
    return torch.cat(predictions).numpy() if predictions else np.empty(0, dtype=np.int64)


def mode_accuracies(
    model: PromptedClassifier, data: SplitTensors, modes: Sequence[str], batch_size: int, seed: int
) -> dict[str, float]:
    labels = data.labels.numpy()
    return {
        mode: float((predict(model, data, mode, batch_size, seed) == labels).mean())
        for mode in modes
    }


def k_values(num_classes: int) -> list[int]:
    return sorted({1, num_classes // 2, num_classes - 1} - {0})


def forget_sets(
    num_classes: int, k: int, max_sets: int | None, seed: int
) -> tuple[list[tuple[int, ...]], bool]:
    """The class sets to forget for this k, and whether they are all C-choose-k of them.

    Sampling is seeded by (seed, k), so every method evaluated with the same seed sees
    the same sets."""
    if not 1 <= k < num_classes:
        raise ValueError(f"k must satisfy 1 ≤ k < C = {num_classes}, got k = {k}")
    if max_sets is not None and max_sets < 1:
        raise ValueError(f"max_sets must be ≥ 1 or null, got {max_sets}")
    total = math.comb(num_classes, k)
    if max_sets is None or max_sets >= total:
        if total > EXHAUSTIVE_LIMIT:
            raise ValueError(f"C({num_classes},{k}) = {total} sets is too many; set max_sets")
        return list(itertools.combinations(range(num_classes), k)), True
    rng = np.random.default_rng([seed, k])
    chosen: set[tuple[int, ...]] = set()
    while len(chosen) < max_sets:
        chosen.add(tuple(sorted(rng.choice(num_classes, size=k, replace=False).tolist())))
    return sorted(chosen), False


def forget_k(
    unlearn: Unlearner,
    test: SplitTensors,
    num_classes: int,
    ks: Sequence[int],
    max_sets: int | None,
    seed: int,
    batch_size: int,
) -> dict[str, float]:
    """Flat metrics ``k{k}.forget_acc.mean`` etc. for every k, and the cost of unlearning:
    ``cost.<field>.mean`` over every set, ``k{k}.cost.<field>.mean`` per k (a baseline's
    cost grows with the data it touches), ``cost.unlearn_seconds.max``."""
    labels = test.labels.numpy()
    metrics: dict[str, float] = {}
    costs: list[CostRecord] = []
    for k in ks:
        sets, exhaustive = forget_sets(num_classes, k, max_sets, seed)
        forget_accs, retain_accs, k_costs = [], [], []
        for classes in tqdm(sets, desc=f"forget k={k}", unit="set", leave=False, disable=None):
            forgotten, cost = unlearn(classes)
            k_costs.append(cost)
            correct = predict(forgotten, test, "full_bank", batch_size, seed) == labels
            in_set = np.isin(labels, classes)
            forget_accs.append(float(correct[in_set].mean()))
            retain_accs.append(float(correct[~in_set].mean()))
        metrics.update({
            f"k{k}.forget_acc.mean": float(np.mean(forget_accs)),
            f"k{k}.forget_acc.std": float(np.std(forget_accs)),
            f"k{k}.retain_acc.mean": float(np.mean(retain_accs)),
            f"k{k}.retain_acc.std": float(np.std(retain_accs)),
            f"k{k}.sets": len(sets),
            f"k{k}.exhaustive": int(exhaustive),
        })  # fmt: skip
        metrics.update(cost_metrics(k_costs, prefix=f"k{k}.cost."))
        costs += k_costs
    metrics.update(cost_metrics(costs))
    metrics["cost.unlearn_seconds.max"] = max(c.unlearn_seconds for c in costs)
    return metrics


def transfer_metrics(
    model: PromptedClassifier,
    unlearn: Unlearner,
    data: SplitTensors,
    max_sets: int | None,
    seed: int,
    batch_size: int,
) -> dict[str, float]:
    """An extra test split of another origin (real recordings for a synthesised set): the
    no-forget ``full_bank`` accuracy and forget-k at k = 1 on the same sets as ``test``
    (forget accuracy is NaN for a set whose class the split has no sample of)."""
    accuracy = mode_accuracies(model, data, ("full_bank",), batch_size, seed)["full_bank"]
    forgetting = forget_k(unlearn, data, model.num_classes, [1], max_sets, seed, batch_size)
    with_samples = set(data.labels.tolist())
    keep = ("k1.forget_acc.mean", "k1.forget_acc.std", "k1.retain_acc.mean", "k1.retain_acc.std")
    return {
        "no_forget.full_bank.acc": accuracy,
        "classes": len(with_samples),
        **{key: forgetting[key] for key in keep},
    }
