"""The prompt family's never-seen references, ``retrain_prompt``: prompt models trained from
scratch on the retained classes only, so the forgotten classes' data never reached them
and their prompts never existed (the bank is built without them, before training; their
head rows exist and were only ever pushed down).

They are the prompt family's exact unlearning, as ``retrain`` is the plain family's
(``pfm.unlearn.base.REFERENCES``): the unlearn stage scores them as method
``retrain_prompt``, and the recovery attack on them, under the same capability, measures
what the adversary can rebind from nothing; the same attack on an unlearned prompt model
(``pfm``, ``pfm_defended``), minus that, is the residual knowledge. Each is trained with
the prompt model's own recipe (params ``train``) and initialisation (same spec and seed).
Stage train saves one per attacked draw (``pfm.draws.attacked_draws``, ``fit_reference``)
with a manifest (``pfm.unlearn.manifest``) whose method is ``retrain_prompt``.
"""

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pfm.batches import SplitTensors
from pfm.cost import optimizer_steps
from pfm.data.prepared import PreparedDataset, Split
from pfm.losses import prompt_objective
from pfm.models.checkpoint import save_model
from pfm.models.prompted import ModelSpec, PromptedClassifier, build_model, trainable_parameters
from pfm.train import TrainConfig, TrainResult, resolve_device, resume_key, train
from pfm.unlearn.data import class_slice
from pfm.unlearn.manifest import draw_entry, draw_file


def never_seen(
    spec: ModelSpec,
    classes: tuple[int, ...],
    train_split: Split,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    checkpoint: Path | None = None,
    key: str = "",
) -> tuple[PromptedClassifier, TrainResult]:
    """A prompt model of ``spec`` trained on the samples of ``train_split`` outside
    ``classes`` with the pre-forgettable objective, without the prompts of ``classes``
    (resumable from ``checkpoint`` under ``key``, as ``pfm.train.train``), and its
    training record: its seconds are the reference's unlearning cost."""
    if not spec.with_prompts:
        raise ValueError("the never-seen reference is a prompt model; got a prompt-free spec")
    model = build_model(spec, seed).forget(classes).to(device)
    retain = SplitTensors(class_slice(train_split, classes, keep=False), model.input_size, device)
    quiet = replace(config, eval_modes=())  # no validation pass: nothing selects on it
    result = train(
        model, prompt_objective(config.kl_weight), retain, retain, quiet, seed, checkpoint, key
    )
    return model.eval(), result


def fit_reference(
    folder: Path,
    checkpoints: Path,
    spec: ModelSpec,
    config: TrainConfig,
    dataset: PreparedDataset,
    data_digest: str,
    classes: tuple[int, ...],
    seed: int,
    shown: Path | None = None,
) -> dict[str, Any]:
    """The never-seen reference without ``classes`` (``never_seen``), saved in ``folder``
    and resumable from a checkpoint in ``checkpoints``; its manifest entry, with the
    training run's cost (its unlearning cost as a method). ``shown``: the folder named in
    the progress line (where ``folder`` is staged)."""
    # "never_seen": the references' name when their checkpoints were first keyed
    key = resume_key(spec, config, seed, "never_seen", classes, data_digest)
    device = resolve_device(config.device)
    train_split = dataset.splits["train"]
    model, result = never_seen(
        spec, classes, train_split, config, seed, device, checkpoints / draw_file(classes), key
    )
    save_model(model, folder / draw_file(classes))
    print(f"never-seen reference without {list(classes)} → {shown or folder}", flush=True)
    retained = int((~np.isin(train_split.labels, classes)).sum())
    return {
        **draw_entry(classes),
        "train_seconds": result.train_seconds,
        "optimizer_steps": optimizer_steps(retained, config.batch_size, config.epochs),
        "samples_touched": retained * config.epochs,
        "trainable_params": trainable_parameters(model),
    }
