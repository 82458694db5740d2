"""The one training loop, shared by the prompt model and every baseline.

Seed-deterministic and resumable: after each epoch the trainable state, the optimizer,
every random generator and the history are written atomically to one checkpoint, keyed
by a hash of everything that defines the run; a killed run restarts from its last
finished epoch and ends bit-identical to an uninterrupted one, while a checkpoint from a
different configuration is ignored rather than resumed. Each epoch's record keeps the
run's peak memory so far, so a finished run "resumed" with nothing left to train reports
the cost it had rather than that of a process that only loaded it.

Nothing in a step waits for the device: the epoch's loss is summed on the device (in
float64, so the recorded mean is the very number a host-side sum of each step's float32
loss gave) and read once per epoch, and a visible progress bar reads it every
``POSTFIX_EVERY`` steps. ``precision`` runs the forwards under ``pfm.precision.autocast``.
"""

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from tqdm import tqdm

from pfm.batches import SplitTensors
from pfm.config import Count, Device, NonEmpty, Rate, Weight, one_key, section
from pfm.cost import peak_memory_bytes
from pfm.evaluate import mode_accuracies
from pfm.losses import Objective
from pfm.models.checkpoint import model_state, read_checkpoint, write_torch
from pfm.models.prompted import PromptedClassifier
from pfm.modes import ModeName
from pfm.precision import Precision, autocast

TRAIN_FORMAT = "pfm-train/1"
POSTFIX_EVERY = 25  # steps between a visible progress bar's loss readings (each waits)


@dataclass(frozen=True)
class TrainConfig:
    epochs: Count
    batch_size: Count
    lr: Rate
    prompt_lr: Rate | None = None  # Adam lr of the prompt bank; null: ``lr``
    kl_weight: Weight = 1.0
    eval_modes: Annotated[tuple[ModeName, ...], NonEmpty()] = ("full_bank",)
    eval_batch_size: Count = 256
    device: Device = "auto"
    precision: Precision = "fp32"  # fp32 | bf16 (autocast; pfm.precision)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or (self.prompt_lr or 1) <= 0:
            raise ValueError(
                f"bad training config {self}: need epochs ≥ 0, batch_size ≥ 1, lr and prompt_lr > 0"
            )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def train_device(params: Mapping[str, Any]) -> torch.device:
    """The device of params' ``train.device``: every stage after train runs a model where
    it was trained."""
    return resolve_device(one_key(section(params, "train"), "device", Device, "train", "auto"))


def resume_key(spec: object, config: TrainConfig, seed: int, *identity: object) -> str:
    """Hash of everything that defines a run except its length: a checkpoint with the
    same key and no more epochs than asked for is resumed (``-S train.epochs=N`` goes
    on from where a shorter run stopped); anything else starts afresh. ``identity``
    names the data and objective (e.g. a hash of the prepared file). The thread count
    is part of it: sums split over other threads differ in their last bits, so a run
    resumed at another count would not end as an uninterrupted one (``pfm.parallel``)."""
    config = dataclasses.replace(config, epochs=0)
    parts = (dataclasses.asdict(spec), config, seed, torch.get_num_threads(), identity)
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    train_seconds: float
    resumed_from_epoch: int


def _save(
    path: Path,
    key: str,
    epoch: int,
    model: PromptedClassifier,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    history: list[dict[str, float]],
    seconds: float,
) -> None:
    payload = {
        "format": TRAIN_FORMAT,
        "key": key,
        "epoch": epoch,
        "model": model_state(model),
        "optimizer": optimizer.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            **{k: g.get_state() for k, g in generators.items()},
        },
        "history": history,
        "seconds": seconds,
    }
    write_torch(path, payload)


def train(
    model: PromptedClassifier,
    objective: Objective,
    train_data: SplitTensors,
    val_data: SplitTensors,
    config: TrainConfig,
    seed: int,
    checkpoint: Path | None,
    key: str,
) -> TrainResult:
    """Train ``model`` in place with Adam on its trainable parameters.

    The prompt bank is its own parameter group (``prompt_lr``): each prompt row receives
    gradient only from the samples it appears with, and starts at N(0, 1) — far from
    where a shared ``lr`` of 1e-3 can move it in a few hundred steps."""
    device = train_data.device
    model.to(device)
    others = [p for p in model.parameters() if p.requires_grad and p is not model.prompts]
    optimizer = torch.optim.Adam(
        [{"params": others}, {"params": [model.prompts], "lr": config.prompt_lr or config.lr}],
        lr=config.lr,
    )
    torch.manual_seed(seed)
    generators = {
        "order": torch.Generator().manual_seed(seed),
        "prompts": torch.Generator().manual_seed(seed + 1),
    }
    history: list[dict[str, float]] = []
    seconds, start_epoch = 0.0, 0
    if checkpoint is not None and checkpoint.is_file():
        state = read_checkpoint(checkpoint, TRAIN_FORMAT)
        if state["key"] == key and state["epoch"] <= config.epochs:
            model.load_state_dict(state["model"]["state"], strict=False)
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"]["torch"])
            for name, generator in generators.items():
                generator.set_state(state["rng"][name])
            history, seconds, start_epoch = state["history"], state["seconds"], state["epoch"]
            tqdm.write(f"resuming from {checkpoint} after epoch {start_epoch}")
        else:
            tqdm.write(
                f"ignoring {checkpoint}: it belongs to another configuration or a longer run"
            )
    for epoch in range(start_epoch + 1, config.epochs + 1):
        model.train()
        tick = time.perf_counter()
        order = torch.randperm(len(train_data), generator=generators["order"])
        total, steps = torch.zeros((), dtype=torch.float64, device=device), 0
        bar = tqdm(
            train_data.marked_batches(config.batch_size, order),
            desc=f"epoch {epoch}/{config.epochs}",
            total=-(-len(train_data) // config.batch_size),
            unit="batch",
            leave=False,
            disable=None,
        )
        for batch in bar:
            with autocast(device, config.precision):
                loss = objective(model, batch, generators["prompts"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1
            if not bar.disable and steps % POSTFIX_EVERY == 0:
                bar.set_postfix(loss=f"{float(total) / steps:.4f}")
        mean_loss = float(total) / max(steps, 1)  # the epoch's one wait for the device
        seconds += time.perf_counter() - tick
        record = {"epoch": epoch, "loss": mean_loss, "train_seconds": seconds}
        accuracies = mode_accuracies(
            model, val_data, config.eval_modes, config.eval_batch_size, seed, config.precision
        )
        record.update({f"val.{mode}": acc for mode, acc in accuracies.items()})
        earlier_peak = history[-1].get("peak_memory_bytes", 0) if history else 0
        record["peak_memory_bytes"] = max(earlier_peak, peak_memory_bytes(device))  # validation too
        history.append(record)
        tqdm.write(
            " ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
            )
        )
        if checkpoint is not None:
            _save(checkpoint, key, epoch, model, optimizer, generators, history, seconds)
    model.eval()
    return TrainResult(history=history, train_seconds=seconds, resumed_from_epoch=start_epoch)
