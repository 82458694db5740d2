"""Cost accounting, the same record shape for every method and the prompt model.

Unlearning: the prompt model's ``forget`` and every baseline go through one runner
(``pfm.unlearn.run``), which measures each call with a ``Meter``: wall-clock seconds and
optimizer steps (a process-wide optimizer hook, so no method reports its own count),
plus the samples its data handles yielded and the parameter elements it changed. RTE,
the run-time efficiency of a method, is its seconds over ``retrain``'s on the same
dataset, seed and forget set (so ``retrain`` itself is 1), worked out where the runs
meet (``pfm.reporting.aggregate.rte``: the report stage imports no torch). A method
with a closed-form, data-free stage (PI-Prefix's pseudo-inverse) wraps it in ``transform_timer``
so that stage's seconds are reported apart too (``transform_seconds``, part of the total).

Models: ``model_cost`` gives every trained model the same flat ``cost.*`` keys. FLOPs are
counted by torch's ``FlopCounterMode`` on a real forward — the dispatched matmuls,
convolutions and attention — never by a hand formula; one multiply-add counts as 2
FLOPs. Peak memory is what the device reports: CUDA's allocator peak on a GPU, the
process's peak resident set size (RSS) on a CPU, which includes the interpreter and torch.
"""

import math
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from types import TracebackType

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.flop_counter import FlopCounterMode

from pfm.models.prompted import PromptedClassifier


@dataclass(frozen=True)
class CostRecord:
    unlearn_seconds: float  # wall clock of the unlearning call alone
    optimizer_steps: int  # optimizer.step() calls, any optimizer
    samples_touched: int  # samples read from forget/retain data, with repetition
    needs_forget_data: bool
    needs_retain_data: bool
    trainable_params: int  # parameter elements changed, added or removed (measured)
    transform_seconds: float = 0.0  # of unlearn_seconds, in closed-form stages (0: none)


FLAGS = tuple(f.name for f in fields(CostRecord) if f.type is bool)
NUMERIC = tuple(f.name for f in fields(CostRecord) if f.type is not bool)


_ACTIVE: list["Meter"] = []  # meters whose block is running, innermost last


@contextmanager
def transform_timer() -> Iterator[None]:
    """Add the block's wall-clock seconds to every running ``Meter``'s
    ``transform_seconds``: how a method marks its closed-form stage."""
    start = time.perf_counter()
    try:
        yield
    finally:
        for meter in _ACTIVE:
            meter.transform_seconds += time.perf_counter() - start


class Meter:
    """Context manager: wall-clock seconds and optimizer steps taken inside it.

    Steps are counted by a global post-step hook on ``torch.optim.Optimizer``, so an
    optimizer a method builds internally (``pfm.train.train`` builds its own) counts too.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.steps = 0
        self.transform_seconds = 0.0

    def _count(self, *_: object) -> None:
        self.steps += 1

    def __enter__(self) -> "Meter":
        self._handle = register_optimizer_step_post_hook(self._count)
        _ACTIVE.append(self)
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.seconds = time.perf_counter() - self._start
        self._handle.remove()
        _ACTIVE.remove(self)


@torch.no_grad()
def changed_parameters(before: nn.Module, after: nn.Module) -> int:
    """Parameter elements changed, added or removed between two models: one meaning for
    every method, measured rather than declared.

    Elements whose value differs count; a parameter whose shape changed (the prompt bank
    after ``forget`` drops rows; rows are removed whole, the kept ones untouched) counts
    the elements it lost or gained; one that only ``after`` has (deep prefixes a method
    added and trained) counts in full."""
    reference = dict(before.named_parameters())
    changed = 0
    for name, param in after.named_parameters():
        old = reference.get(name)
        if old is None:
            changed += param.numel()
        elif old.shape == param.shape:
            changed += int((old.detach().to(param.device) != param.detach()).sum())
        else:
            changed += abs(old.numel() - param.numel())
    return changed


def cost_metrics(records: Sequence[CostRecord], prefix: str = "cost.") -> dict[str, float]:
    """Flat keys: ``{prefix}<field>.mean`` for the numbers, ``{prefix}<flag>`` as 0/1."""
    if not records:
        raise ValueError("no cost records to summarise")
    metrics = {
        f"{prefix}{name}.mean": float(np.mean([getattr(r, name) for r in records]))
        for name in NUMERIC
    }
    for name in FLAGS:
        values = {getattr(r, name) for r in records}
        assert len(values) == 1, f"{name} differs between draws of one method"
        metrics[f"{prefix}{name}"] = int(values.pop())
    return metrics


def flops_per_sample(model: nn.Module, *inputs: torch.Tensor, **kwargs: object) -> int:
    """FLOPs of one forward ``model(*inputs, **kwargs)`` divided by the batch size, the
    length of ``inputs[0]``.

    Counted under the math attention backend: ``FlopCounterMode`` has no formula for
    CPU's fused attention kernel, so a fused forward would silently drop every attention
    matmul on a CPU and count it on a GPU; the math backend dispatches plain ``bmm`` calls
    that are counted the same everywhere."""
    if not inputs or inputs[0].ndim == 0 or len(inputs[0]) == 0:
        raise ValueError("flops_per_sample needs a non-empty batch as its first input")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(*inputs, **kwargs)
    return round(counter.get_total_flops() / len(inputs[0]))


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total and trainable (``requires_grad``) parameter counts."""
    params = list(model.parameters())
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def prompt_bank_bytes(model: PromptedClassifier) -> int:
    """Bytes of the class-prompt bank: the storage a pre-forgettable model adds to a plain
    classifier (0 for a plain model, whose bank is empty)."""
    return model.prompts.numel() * model.prompts.element_size()


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process so far: CUDA's allocator peak on a GPU, peak RSS on
    a CPU (``ru_maxrss`` is in KiB on Linux, bytes on macOS)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def optimizer_steps(num_samples: int, batch_size: int, epochs: int) -> int:
    """Steps of ``pfm.train.train``: one per batch, the last batch kept even if short."""
    return epochs * math.ceil(num_samples / batch_size)


def model_cost(
    model: PromptedClassifier, pixel_values: torch.Tensor, device: torch.device
) -> dict[str, int]:
    """The flat ``cost.*`` record of a trained model, the same keys for every method.

    FLOPs are those of deployment inference, ``full_bank``: every prompt still in the
    bank is prepended (none for a plain classifier), so the prompt model's extra tokens
    are paid for here. ``pixel_values`` is any example batch on ``device``."""
    bank = torch.tensor(model.bank_classes, dtype=torch.long, device=pixel_values.device)
    prompts = bank.expand(len(pixel_values), -1)  # (B, |bank|)
    was_training = model.training
    model.eval()
    flops = flops_per_sample(model, pixel_values, prompts)
    model.train(was_training)
    params = parameter_counts(model)
    return {
        "cost.flops_per_sample": flops,
        "cost.params.total": params["total"],
        "cost.params.trainable": params["trainable"],
        "cost.prompt_bank_bytes": prompt_bank_bytes(model),
        "cost.peak_memory_bytes": peak_memory_bytes(device),
    }
