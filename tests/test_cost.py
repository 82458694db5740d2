"""Cost accounting: optimizer steps counted for any optimizer, changes measured, flat
summaries; known-answer FLOPs, parameter and byte counts, one record shape."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pfm.cost import (
    CostRecord,
    Meter,
    changed_parameters,
    cost_metrics,
    flops_per_sample,
    model_cost,
    optimizer_steps,
    parameter_counts,
    peak_memory_bytes,
    prompt_bank_bytes,
)
from tests.conftest import make_model


def test_meter_counts_every_optimizer_step_inside_it_and_none_outside() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    adam, sgd = torch.optim.Adam([weight], lr=0.1), torch.optim.SGD([weight], lr=0.1)
    with Meter() as meter:
        for optimizer in (adam, sgd, adam):
            weight.sum().backward()
            optimizer.step()
    sgd.step()
    assert meter.steps == 3 and meter.seconds > 0


def test_changed_parameters_counts_changed_removed_and_added_elements() -> None:
    before = torch.nn.Linear(3, 2)
    after = torch.nn.Linear(3, 2)
    after.load_state_dict(before.state_dict())
    with torch.no_grad():
        after.weight[0, 1] += 1.0
        after.bias[1] -= 1.0
    assert changed_parameters(before, after) == 2
    after.bias = torch.nn.Parameter(torch.zeros(5))  # reshaped: 3 elements more
    assert changed_parameters(before, after) == 1 + 3
    after.bias = torch.nn.Parameter(torch.zeros(1))  # reshaped: 1 element fewer
    assert changed_parameters(before, after) == 1 + 1


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


def test_linear_flops_are_two_per_multiply_add() -> None:
    layer = nn.Linear(7, 5, bias=False)
    assert flops_per_sample(layer, torch.randn(3, 7)) == 2 * 7 * 5


class Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


def test_attention_flops_are_counted_on_cpu() -> None:
    """Q·Kᵀ and A·V: 2 matmuls of H·L·L·E multiply-adds each, per sample; CPU's fused
    kernel has no FLOP formula, so this is 0 unless the count forces the math backend."""
    batch, heads, length, dim = 2, 3, 5, 4
    q, k, v = (torch.randn(batch, heads, length, dim) for _ in range(3))
    assert flops_per_sample(Attention(), q, k, v) == 2 * 2 * heads * length * length * dim


def test_flops_need_a_batch() -> None:
    with pytest.raises(ValueError, match="non-empty batch"):
        flops_per_sample(nn.Linear(2, 2), torch.empty(0, 2))


def test_parameter_counts_split_frozen_from_trainable() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    assert parameter_counts(model) == {"total": 3 * 4 + 4 + 4 * 2 + 2, "trainable": 4 * 2 + 2}


def test_prompt_bank_bytes_shrink_when_prompts_are_forgotten() -> None:
    model = make_model(num_classes=4)
    width = model.prompts.shape[-1]
    assert prompt_bank_bytes(model) == 4 * 1 * width * 4  # C × L × D float32
    assert prompt_bank_bytes(model.forget([0, 2])) == 2 * width * 4
    assert prompt_bank_bytes(make_model(num_classes=4, with_prompts=False)) == 0


def test_peak_memory_on_cpu_is_at_least_a_live_tensor() -> None:
    block = torch.ones(8 << 20, dtype=torch.uint8)  # 8 MiB, touched
    assert peak_memory_bytes(torch.device("cpu")) >= block.numel()


def test_optimizer_steps_keep_the_short_last_batch() -> None:
    assert optimizer_steps(num_samples=65, batch_size=32, epochs=2) == 2 * 3


def test_model_cost_has_one_shape_and_prompts_cost_flops() -> None:
    size = make_model(num_classes=4).input_size
    x = torch.rand(2, 3, size, size)
    prompted = model_cost(make_model(num_classes=4), x, torch.device("cpu"))
    plain = model_cost(make_model(num_classes=4, with_prompts=False), x, torch.device("cpu"))
    assert (
        set(prompted)
        == set(plain)
        == {
            "cost.flops_per_sample",
            "cost.params.total",
            "cost.params.trainable",
            "cost.prompt_bank_bytes",
            "cost.peak_memory_bytes",
        }
    )
    width = make_model(num_classes=4).prompts.shape[-1]
    assert prompted["cost.params.total"] - plain["cost.params.total"] == 4 * width
    assert prompted["cost.params.trainable"] < prompted["cost.params.total"]  # frozen base
    assert prompted["cost.flops_per_sample"] > plain["cost.flops_per_sample"] > 0
    assert (
        prompted["cost.flops_per_sample"]
        == model_cost(make_model(num_classes=4), x[:1], torch.device("cpu"))[
            "cost.flops_per_sample"
        ]
    )
