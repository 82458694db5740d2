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
(``reference_draws``) with a manifest (``pfm.unlearn.manifest``) whose method is
``retrain_prompt``; the attack stage also attacks them as a run of their own.
"""

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from pfm.attacks.draws import check_limit
from pfm.batches import SplitTensors
from pfm.data.prepared import Split
from pfm.evaluate import forget_sets
from pfm.losses import prompt_objective
from pfm.models.prompted import ModelSpec, PromptedClassifier, build_model
from pfm.train import TrainConfig, TrainResult, train
from pfm.unlearn.data import class_slice

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
