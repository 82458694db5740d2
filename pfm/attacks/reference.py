"""The never-seen reference of the prompt models' recovery attack, ``retrain_prompt``: a
prompt model trained from scratch on the retained classes only, so the forgotten classes'
data never reached it and their prompts never existed (the bank is built without them,
before training; their head rows exist and were only ever pushed down).

The recovery attack on it, under the same capability, measures what the adversary can
rebind from nothing; the same attack on an unlearned prompt model (``pfm``,
``pfm_defended``), minus that, is the residual knowledge. It is trained with the prompt
model's own recipe (params ``train``) and initialisation (same spec and seed), as
``retrain`` is for the plain baselines — whose own ``retrain`` model is their never-seen
reference. Stage train saves one per attacked draw of every k of ``attacks.recovery.k``
(``reference_draws``, ``fit_reference``) with a manifest (``pfm.unlearn.manifest``) whose
method is ``retrain_prompt``; the attack stage also attacks them as a run of their own.
"""

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pfm.attacks.draws import check_limit
from pfm.attacks.protocol import RecoveryParams
from pfm.batches import SplitTensors
from pfm.config import from_mapping, section
from pfm.cost import optimizer_steps
from pfm.data.prepared import PreparedDataset, Split
from pfm.evaluate import forget_sets, sets_per_k
from pfm.losses import prompt_objective
from pfm.models.checkpoint import save_model
from pfm.models.prompted import ModelSpec, PromptedClassifier, build_model, trainable_parameters
from pfm.train import TrainConfig, TrainResult, resolve_device, resume_key, train
from pfm.unlearn import unlearn_params
from pfm.unlearn.data import class_slice
from pfm.unlearn.manifest import draw_entry, draw_file

PROMPT_REFERENCE = "retrain_prompt"  # the method name of the never-seen prompt models


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


def reference_draws(
    num_classes: int,
    ks: Sequence[int],
    max_sets: int | None | Mapping[int, int | None],
    limit: int | None,
    seed: int,
) -> list[tuple[int, ...]]:
    """The forget sets the recovery attack will attack: for each k of ``ks``, the first
    ``limit`` (``None``: all) of the unlearn stage's sets of size k, capped there at
    ``max_sets`` (one cap, or k → cap). They follow from the seed alone
    (``pfm.evaluate.forget_sets``), so the references train beside the prompt model,
    before anything is unlearned; the attack checks that each attacked draw has one."""
    check_limit(limit)
    caps = max_sets if isinstance(max_sets, Mapping) else dict.fromkeys(ks, max_sets)
    unsaved = [k for k in ks if k not in caps]
    if unsaved:
        raise ValueError(
            f"the recovery attack's k {unsaved} are not among the unlearn stage's "
            f"{sorted(caps)}: attack a k the unlearn stage runs (unlearn.k)"
        )
    draws = [s for k in ks for s in forget_sets(num_classes, k, caps[k], seed)[0][:limit]]
    return list(dict.fromkeys(draws))


def unlearn_caps(params: Mapping[str, Any], num_classes: int) -> dict[int, int | None]:
    """k → the unlearn stage's cap on forget sets: the draws the references must match."""
    unlearn = unlearn_params(section(params, "unlearn"))
    return sets_per_k(unlearn.ks(num_classes), unlearn.max_sets)


def attacked_draws(params: Mapping[str, Any], num_classes: int, seed: int) -> list[tuple[int, ...]]:
    """The draws params' recovery attack attacks (``attacks.recovery``'s k and draws, among
    the unlearn stage's sets): one never-seen reference each."""
    recovery = section(section(params, "attacks"), "recovery")
    recovery = from_mapping(RecoveryParams, recovery, "attacks.recovery")
    caps = unlearn_caps(params, num_classes)
    return reference_draws(num_classes, recovery.k, caps, recovery.draws, seed)


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
