"""Cost accounting: steps counted for any optimizer, changes measured, flat summaries."""

import pytest
import torch

from pfm.cost import CostRecord, Meter, changed_parameters, cost_metrics, rte
from pfm.unlearn.compare import versus_retrain


def test_meter_counts_every_optimizer_step_inside_it_and_none_outside() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    adam, sgd = torch.optim.Adam([weight], lr=0.1), torch.optim.SGD([weight], lr=0.1)
    with Meter() as meter:
        for optimizer in (adam, sgd, adam):
            weight.sum().backward()
            optimizer.step()
    sgd.step()
    assert meter.steps == 3 and meter.seconds > 0


def test_changed_parameters_counts_changed_elements_and_skips_removed_ones() -> None:
    before = torch.nn.Linear(3, 2)
    after = torch.nn.Linear(3, 2)
    after.load_state_dict(before.state_dict())
    with torch.no_grad():
        after.weight[0, 1] += 1.0
        after.bias[1] -= 1.0
    assert changed_parameters(before, after) == 2
    after.bias = torch.nn.Parameter(torch.zeros(5))  # reshaped: removed, not trained
    assert changed_parameters(before, after) == 1


def test_cost_metrics_are_flat_means_and_flags() -> None:
    records = [
        CostRecord(1.0, 4, 100, True, False, 10),
        CostRecord(3.0, 6, 300, True, False, 20),
    ]
    assert cost_metrics(records, prefix="k1.cost.") == {
        "k1.cost.unlearn_seconds.mean": 2.0,
        "k1.cost.optimizer_steps.mean": 5.0,
        "k1.cost.samples_touched.mean": 200.0,
        "k1.cost.trainable_params.mean": 15.0,
        "k1.cost.transform_seconds.mean": 0.0,
        "k1.cost.needs_forget_data": 1,
        "k1.cost.needs_retain_data": 0,
    }
    with pytest.raises(ValueError, match="no cost records"):
        cost_metrics([])


def test_rte_is_relative_to_retrain() -> None:
    assert rte(2.0, 8.0) == 0.25 and rte(8.0, 8.0) == 1.0
    with pytest.raises(ValueError, match="retrain seconds"):
        rte(1.0, 0.0)


def test_versus_retrain_gives_gaps_and_rte_per_k() -> None:
    def metrics(retain: float, forget: float, seconds: float) -> dict[str, float]:
        return {
            "k1.retain_acc.mean": retain,
            "k1.forget_acc.mean": forget,
            "k1.cost.unlearn_seconds.mean": seconds,
        }

    rows = versus_retrain({"retrain": metrics(0.9, 0.0, 10.0), "pfm": metrics(0.8, 0.3, 0.1)}, [1])
    assert rows["retrain"] == {"k1.retain_gap": 0.0, "k1.forget_gap": 0.0, "k1.rte": 1.0}
    assert rows["pfm"] == pytest.approx(
        {"k1.retain_gap": -0.1, "k1.forget_gap": 0.3, "k1.rte": 0.01}
    )
    with pytest.raises(KeyError, match="no 'retrain' metrics"):
        versus_retrain({"pfm": metrics(0.8, 0.3, 0.1)}, [1])
