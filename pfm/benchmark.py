"""Throughput of the prompt machinery against the bare backbone: ``python -m pfm.benchmark``.

For a backbone, batch size, precision and device it measures, in images per second,
(a) the bare frozen backbone: its forward, and its forward + backward to the input (the
    least any training through a frozen encoder pays: every block's input gradients);
(b) a prompt-model training step: both forwards of the objective (``mixed_subset``
    cross-entropy, ``wrong_subset`` KL to uniform), the backward and Adam's step on the
    LoRA adapters, the prompt bank and the head;
(c) ``full_bank`` inference: every prompt prepended;
and (d) the milliseconds of one ``forget`` call. It prints them with the ratios
(b) / (a) forward + backward and (c) / (a) forward. The four are timed round-robin, one
call each per round, and each figure is the median over the rounds, so a machine whose
speed drifts slows numerator and denominator alike and the ratios still compare.

Backbones (``BENCHMARK_BACKBONES``): ``vit-tiny`` (the default profile's, 16 px),
``dinov2-small`` (the converted DINOv2-S's architecture from its config.json at 224 px)
and ``vit-b16`` (``ViTConfig()``: ViT-B/16 at 224 px), the last two with random weights —
what a forward costs does not depend on the weights. docs/gpu.md has the figures.
"""

import argparse
import copy
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, ViTConfig

from pfm.batches import MarkedBatch
from pfm.losses import prompt_objective
from pfm.models.backbones import Backbone, build_backbone, from_config
from pfm.models.prompted import ModelSpec, PromptedClassifier, assemble
from pfm.modes import mode_logits
from pfm.precision import PRECISIONS, autocast
from pfm.train import resolve_device

DINOV2_CONFIG = Path("models/backbones/dinov2-small")  # the converter's output folder


@dataclass(frozen=True)
class BenchmarkBackbone:
    build: Callable[[], Backbone]
    input_size: int  # px fed to it


def dinov2_small() -> Backbone:
    """The converted DINOv2-S's architecture, random weights: its config.json is all it
    reads, so the conversion must have run."""
    if not (DINOV2_CONFIG / "config.json").is_file():
        raise FileNotFoundError(
            f"no {DINOV2_CONFIG / 'config.json'}: convert DINOv2-S first "
            f"(dvc repro convert-dinov2; docs/backbones.md)"
        )
    return from_config(AutoConfig.from_pretrained(DINOV2_CONFIG))


BENCHMARK_BACKBONES = {
    "vit-tiny": BenchmarkBackbone(lambda: build_backbone("vit-tiny"), 16),
    "dinov2-small": BenchmarkBackbone(dinov2_small, 224),
    "vit-b16": BenchmarkBackbone(lambda: from_config(ViTConfig()), 224),
}
COLUMNS = (
    "backbone", "px", "tokens", "batch", "precision", "device",
    "fwd img/s", "fwd+bwd img/s", "train img/s", "full_bank img/s", "forget ms",
    "train / fwd+bwd", "full_bank / fwd",
)  # fmt: skip


@dataclass(frozen=True)
class Throughput:
    """One backbone's figures: images per second, forget milliseconds and the ratios."""

    backbone: str
    input_size: int
    tokens: int  # the bare backbone's sequence length; full_bank adds one per class
    batch_size: int
    precision: str
    device: str
    forward: float
    forward_backward: float
    train_step: float
    full_bank: float
    forget_ms: float

    @property
    def train_ratio(self) -> float:
        return self.train_step / self.forward_backward

    @property
    def full_bank_ratio(self) -> float:
        return self.full_bank / self.forward

    def row(self) -> tuple[str, ...]:
        return (
            self.backbone, str(self.input_size), str(self.tokens), str(self.batch_size),
            self.precision, self.device, f"{self.forward:.1f}", f"{self.forward_backward:.1f}",
            f"{self.train_step:.1f}", f"{self.full_bank:.1f}", f"{self.forget_ms:.3f}",
            f"{self.train_ratio:.2f}", f"{self.full_bank_ratio:.2f}",
        )  # fmt: skip


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(
    calls: Sequence[Callable[[], object]], rounds: int, warmup: int, device: torch.device
) -> list[float]:
    """Median seconds of each call over ``rounds`` round-robin rounds, after ``warmup``
    untimed rounds (allocator, autotuning, lazy initialisation)."""
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds ≥ 1 and warmup ≥ 0, got {rounds}, {warmup}")
    times: list[list[float]] = [[] for _ in calls]
    for index in range(warmup + rounds):
        for call, kept in zip(calls, times, strict=True):
            synchronize(device)
            start = time.perf_counter()
            call()
            synchronize(device)
            if index >= warmup:
                kept.append(time.perf_counter() - start)
    return [statistics.median(kept) for kept in times]


def measure(
    name: str,
    batch_size: int,
    precision: str,
    steps: int,
    warmup: int,
    device: torch.device,
    num_classes: int = 10,
) -> Throughput:
    """Every figure of ``name`` (a key of ``BENCHMARK_BACKBONES``) at one setting."""
    choice = BENCHMARK_BACKBONES[name]
    torch.manual_seed(0)
    backbone = choice.build()
    bare = copy.deepcopy(backbone.model).to(device).eval()  # LoRA goes into the other copy
    spec = ModelSpec(backbone=name, num_classes=num_classes, final_layernorm=True)
    model = assemble(spec, backbone, seed=0).to(device)
    images = torch.randn(batch_size, 3, choice.input_size, choice.input_size, device=device)
    labels = torch.randint(0, num_classes, (batch_size,), device=device)
    objective = prompt_objective(1.0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-4)
    generator = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def forward() -> object:
        with autocast(device, precision):
            return bare(pixel_values=images).last_hidden_state

    def forward_backward() -> None:
        inputs = images.clone().requires_grad_(True)
        with autocast(device, precision):
            cls = bare(pixel_values=inputs).last_hidden_state[:, 0]
        cls.float().sum().backward()

    def train_step() -> None:
        model.train()
        with autocast(device, precision):
            loss = objective(model, MarkedBatch(images, labels), generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def full_bank() -> object:
        model.eval()
        with autocast(device, precision):
            return mode_logits(model, images, labels, "full_bank", generator)

    def forget() -> PromptedClassifier:
        return model.forget([0])

    tokens = forward().shape[1]
    timed = seconds_per_call(
        [forward, forward_backward, train_step, full_bank], steps, warmup, device
    )
    (forget_seconds,) = seconds_per_call([forget], max(steps, 20), warmup, device)
    forward_s, backward_s, train_s, bank_s = timed
    return Throughput(
        backbone=name, input_size=choice.input_size, tokens=tokens, batch_size=batch_size,
        precision=precision, device=str(device), forward=batch_size / forward_s,
        forward_backward=batch_size / backward_s, train_step=batch_size / train_s,
        full_bank=batch_size / bank_s, forget_ms=1000 * forget_seconds,
    )  # fmt: skip


def table(results: Sequence[Throughput]) -> str:
    """A Markdown table of ``results``, one row each, ``COLUMNS`` as header."""
    rows = [COLUMNS, *(r.row() for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def main(argv: Sequence[str] | None = None) -> list[Throughput]:
    parser = argparse.ArgumentParser(
        prog="python -m pfm.benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--backbone", nargs="+", default=["vit-tiny"], choices=[*BENCHMARK_BACKBONES, "all"]
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--steps", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args(argv)
    names = list(BENCHMARK_BACKBONES) if "all" in args.backbone else args.backbone
    device = resolve_device(args.device)
    results = [
        measure(name, args.batch_size, args.precision, args.steps, args.warmup, device)
        for name in names
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(table(results))
    return results


if __name__ == "__main__":
    main()
