import itertools
import math

import numpy as np
import pytest
import torch

from pfm.batches import SplitTensors
from pfm.cost import CostRecord
from pfm.data.prepared import Split
from pfm.evaluate import forget_k, forget_plan, forget_sets, k_values, sets_per_k
from pfm.losses import kl_to_uniform


def test_kl_to_uniform_is_zero_at_uniform_and_matches_the_formula() -> None:
    assert kl_to_uniform(torch.zeros(5, 4)).item() == pytest.approx(0.0, abs=1e-7)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    q = logits.softmax(-1)[0]
    expected = sum(0.25 * math.log(0.25 / float(qi)) for qi in q)
    assert kl_to_uniform(logits).item() == pytest.approx(expected, rel=1e-5)


def test_k_values_follow_the_protocol() -> None:
    assert k_values(10) == [1, 5, 9]
    assert k_values(11) == [1, 5, 10]
    assert k_values(4) == [1, 2, 3]
    assert k_values(3) == [1, 2]
    assert k_values(2) == [1]


def test_forget_sets_are_every_combination_by_default() -> None:
    sets, exhaustive = forget_sets(11, 5, None, seed=0)
    assert exhaustive and len(sets) == 462 == len(set(sets))


def test_capped_forget_sets_are_seeded_distinct_samples() -> None:
    a, exhaustive = forget_sets(10, 5, 7, seed=3)
    b, _ = forget_sets(10, 5, 7, seed=3)
    c, _ = forget_sets(10, 5, 7, seed=4)
    assert not exhaustive and a == b != c
    assert len(set(a)) == 7 and all(len(s) == 5 == len(set(s)) for s in a)
    assert forget_sets(10, 1, 50, seed=0) == (forget_sets(10, 1, None, 0)[0], True)


@pytest.mark.parametrize("k", [0, 10, 11])
def test_k_out_of_range_is_refused(k: int) -> None:
    with pytest.raises(ValueError, match="1 ≤ k < C"):
        forget_sets(10, k, None, seed=0)


class _Oracle(torch.nn.Module):
    """Predicts the true class iff it was not forgotten, else the next class.
    The label is read back from the pixels, where the test writes it (value 50·label)."""

    num_classes = 4

    def __init__(self, forgotten: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.forgotten = torch.tensor(forgotten, dtype=torch.long)
        self.bank_classes: list[int] = []

    def forward(self, x: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        labels = ((x[:, 0, 0, 0] + 1) / 2 * 255 / 50).round().long()
        kept = ~torch.isin(labels, self.forgotten)
        predicted = torch.where(kept, labels, (labels + 1) % 4)
        return torch.nn.functional.one_hot(predicted, 4).float()


def test_forget_k_reports_accuracy_and_cost_of_each_set() -> None:
    labels = np.repeat(np.arange(4), 5)
    images = np.broadcast_to((50 * labels).astype(np.uint8)[:, None, None, None], (20, 2, 2, 1))
    data = SplitTensors(Split(images.copy(), labels), input_size=2, device=torch.device("cpu"))
    requests: list[tuple[int, ...]] = []

    def unlearn(classes: tuple[int, ...]) -> tuple[_Oracle, CostRecord]:
        requests.append(classes)
        return _Oracle(classes), CostRecord(len(classes), 2 * len(classes), 0, True, False, 7)

    plan = forget_plan(4, [1, 2], None, seed=0)
    metrics = forget_k(unlearn, data, plan, seed=0, batch_size=7, val=data)
    assert requests == [(0,), (1,), (2,), (3,)] + list(itertools.combinations(range(4), 2))
    assert metrics["k1.forget_acc.mean"] == 0.0 and metrics["k1.retain_acc.mean"] == 1.0
    assert metrics["k2.forget_acc.std"] == 0.0 and metrics["k2.sets"] == 6
    assert metrics["k1.exhaustive"] == 1
    assert metrics["k1.cost.unlearn_seconds.mean"] == 1.0
    assert metrics["k2.cost.optimizer_steps.mean"] == 4.0
    assert metrics["cost.unlearn_seconds.mean"] == pytest.approx((4 * 1 + 6 * 2) / 10)
    assert metrics["cost.unlearn_seconds.max"] == 2.0
    assert metrics["cost.needs_forget_data"] == 1 and metrics["cost.needs_retain_data"] == 0
    assert metrics["k1.val.forget_acc.mean"] == 0.0 and metrics["k1.val.retain_acc.mean"] == 1.0
    units = metrics.pop("units")
    assert all(isinstance(v, int | float) for v in metrics.values())
    assert [(u["k"], tuple(u["classes"])) for u in units] == [(len(c), c) for c in requests]
    assert units[4] == {
        "classes": [0, 1], "k": 2, "forget_acc": 0.0, "retain_acc": 1.0,
        "val.forget_acc": 0.0, "val.retain_acc": 1.0, "cost.unlearn_seconds": 2.0,
        "cost.optimizer_steps": 4.0, "cost.samples_touched": 0.0,
        "cost.trainable_params": 7.0, "cost.transform_seconds": 0.0,
    }  # fmt: skip


def test_variants_are_scored_beside_the_unlearned_model() -> None:
    labels = np.repeat(np.arange(4), 5)
    images = np.broadcast_to((50 * labels).astype(np.uint8)[:, None, None, None], (20, 2, 2, 1))
    data = SplitTensors(Split(images.copy(), labels), input_size=2, device=torch.device("cpu"))

    def unlearn(classes: tuple[int, ...]) -> tuple[_Oracle, CostRecord]:
        return _Oracle(classes), CostRecord(0.0, 0, 0, False, False, 0)

    def undone(model: _Oracle) -> dict[str, _Oracle]:  # a model that forgot nothing
        return {"artifact": _Oracle(())}

    plan = forget_plan(4, [1], 2, seed=0)
    metrics = forget_k(unlearn, data, plan, seed=0, batch_size=7, variants=undone)
    assert metrics["k1.forget_acc.mean"] == 0.0
    assert metrics["k1.artifact.forget_acc.mean"] == 1.0
    assert not any(".val." in key for key in metrics)
    metrics = forget_k(unlearn, data, plan, seed=0, batch_size=7, val=data, variants=undone)
    assert metrics["k1.val.forget_acc.mean"] == 0.0
    assert metrics["k1.artifact.val.forget_acc.mean"] == 1.0  # on every split, as the model


def test_a_cap_per_k_or_one_for_all() -> None:
    assert sets_per_k([1, 2], 5) == {1: 5, 2: 5}
    assert sets_per_k([1, 2], [5, 1]) == {1: 5, 2: 1}
    assert sets_per_k([1], None) == {1: None}
    with pytest.raises(ValueError, match="one per k"):
        sets_per_k([1, 2], [5])
    plan = forget_plan(10, [1, 2], [5, 1], seed=0)
    assert len(plan[1][0]) == 5 and len(plan[2][0]) == 1
    assert plan[1][0][:1] == forget_plan(10, [1], 5, seed=0)[1][0][:1]


def test_fewer_sets_are_a_subset_of_more_sets_with_the_same_seed() -> None:
    """A baseline evaluated on 1 set per k forgets a set the prompt model also forgets
    in its larger sample: both draw from one seeded sequence."""
    for k in (2, 5):
        few, _ = forget_sets(10, k, 1, seed=3)
        many, _ = forget_sets(10, k, 10, seed=3)
        assert set(few) <= set(many)
