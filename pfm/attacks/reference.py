"""The never-seen reference of the prompt-recovery attack: a prompt model trained from
scratch on the retained classes only, so the forgotten classes' data never reached it
and their prompts never existed (the bank is built without them, before training).

The prompt-recovery attack on it measures what a prompt can rebind from nothing; the
same attack on the unlearned prompt model, minus that, is the residual knowledge. It is
trained with the prompt model's own recipe (params ``train``) and initialisation (same
spec and seed), as ``retrain`` is for the plain baselines — whose own ``retrain`` model
is their never-seen reference.
"""

from dataclasses import replace
from pathlib import Path

import torch

from pfm.attacks.draws import check_limit
from pfm.batches import SplitTensors
from pfm.data.prepared import Split
from pfm.evaluate import forget_sets
from pfm.losses import prompt_objective
from pfm.models.prompted import ModelSpec, PromptedClassifier, build_model
from pfm.train import TrainConfig, train
from pfm.unlearn.data import class_slice


def never_seen(
    spec: ModelSpec,
    classes: tuple[int, ...],
    train_split: Split,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    checkpoint: Path | None = None,
    key: str = "",
) -> PromptedClassifier:
    """A prompt model of ``spec`` trained on the samples of ``train_split`` outside
    ``classes`` with the pre-forgettable objective, without the prompts of ``classes``
    (resumable from ``checkpoint`` under ``key``, as ``pfm.train.train``)."""
    if not spec.with_prompts:
        raise ValueError("the never-seen reference is a prompt model; got a prompt-free spec")
    model = build_model(spec, seed).forget(classes).to(device)
    retain = SplitTensors(class_slice(train_split, classes, keep=False), model.input_size, device)
    quiet = replace(config, eval_modes=())  # no validation pass: nothing selects on it
    train(model, prompt_objective(config.kl_weight), retain, retain, quiet, seed, checkpoint, key)
    return model.eval()


def reference_draws(
    num_classes: int, k: int, max_sets: int | None, limit: int | None, seed: int
) -> list[tuple[int, ...]]:
    """The forget sets the recovery attack will attack: the first ``limit`` (``None``:
    all) of the unlearn stage's sets of size ``k``. They follow from the seed alone
    (``pfm.evaluate.forget_sets``), so the references train beside the prompt model,
    before anything is unlearned; the attack checks that each attacked draw has one."""
    check_limit(limit)
    return forget_sets(num_classes, k, max_sets, seed)[0][:limit]
