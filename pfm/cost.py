"""Cost accounting: what a model costs to train, to keep and to run.

Every model, prompt model or baseline, gets the same flat record from ``model_cost``
(``cost.*`` keys), so the aggregate compares like with like. FLOPs are counted by
torch's ``FlopCounterMode`` on a real forward — the dispatched matmuls, convolutions
and attention — never by a hand formula; one multiply-add counts as 2 FLOPs. Peak memory
is what the device reports: CUDA's allocator peak on a GPU, the process's peak resident
set size (RSS) on a CPU, which includes the Python interpreter and torch itself.
"""

import math
import resource
import sys

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from pfm.models.prompted import PromptedClassifier


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
