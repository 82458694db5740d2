"""The params limits that depend on a dataset, checked at stage ``validate``.

A forget-set size must lie below the class count C, a shot count within a class's train
samples: limits a stage meets only once it has loaded the data, after DVC has removed its
outputs. Each listed dataset's registry description (``pfm.data.registry.describe``:
class count, input kind, train samples of the smallest class, from its options alone)
gives them here, before any data is prepared, through the rules the stages apply
(``pfm.evaluate.check_k``/``check_cap``/``sets_per_k``). What is valid but does less
than asked (an OOD probe on the very dataset it probes, skipped there) is returned as a
warning rather than refused: a matrix over two image datasets may name one as the
other's probe. The backbone each dataset's modality picks must read that modality, where
it is known before training (``pfm.models.backbones.backbone_config``), and read the
input size asked (``model.input_size``, ``pfm.models.backbones.size_refusal``); a text
backbone must have the vocabulary of the tokenizer the dataset is prepared with
(``pfm.data.tokens``), or its ids would name other tokens, or none.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PretrainedConfig

from pfm.attacks import MiaParams, RecoveryParams
from pfm.attacks.probes import ood_candidates, ood_dataset
from pfm.config import ParamError, bad_value
from pfm.data.modalities import MODALITIES
from pfm.data.registry import DatasetInfo, describe
from pfm.data.tokens import TOKENIZERS
from pfm.evaluate import check_cap, check_k, k_values, sets_per_k
from pfm.models.answers import check_next_token_readout
from pfm.models.backbones import backbone_config, input_kind, size_refusal, token_layout
from pfm.specs import EvaluateParams, ModelParams, check_modality
from pfm.unlearn import UnlearnParams

Caps = int | None | Sequence[int | None]  # a section's max_sets: one cap, or one per k


def forget_sizes(
    section: str, ks: Sequence[int] | None, max_sets: Caps, name: str, info: DatasetInfo
) -> list[int]:
    """The k a stage reading ``section`` runs on dataset ``name`` (``ks``, or the protocol's
    for its C), each drawable with its cap."""
    c = info.num_classes
    chosen = list(ks) if ks is not None else k_values(c)
    check_sizes(f"{section}.k", chosen, name, info)
    try:
        caps = sets_per_k(chosen, max_sets)
    except ValueError:
        raise bad_value(
            f"{section}.max_sets", f"one cap or one per k of {chosen} (dataset {name})", max_sets
        ) from None
    for k, cap in caps.items():
        try:
            check_cap(c, k, cap)
        except ValueError as error:
            raise ParamError(f"{section}.max_sets: on dataset {name}, {error.args[0]}") from None
    return chosen


def as_list(value: int | Sequence[int]) -> list[int]:
    return [value] if isinstance(value, int) else list(value)


def check_sizes(key: str, ks: int | Sequence[int], name: str, info: DatasetInfo) -> None:
    """Forget-set sizes (one, or a list): each 1 ≤ k < C of dataset ``name``."""
    for k in as_list(ks):
        try:
            check_k(info.num_classes, k)
        except ValueError:
            limit = f"sizes 1 ≤ k < C = {info.num_classes} (the classes of dataset {name})"
            raise bad_value(key, limit, ks) from None


def check_attacked(
    key: str, ks: int | Sequence[int], run: Sequence[int], name: str, info: DatasetInfo
) -> None:
    """An attack's k: forget-set sizes the unlearn stage saved models for on ``name``."""
    check_sizes(key, ks, name, info)
    if not set(as_list(ks)) <= set(run):
        raise bad_value(key, f"sizes unlearn.k runs on dataset {name} ({run})", ks)


def check_shots(key: str, shots: int | Sequence[int], name: str, info: DatasetInfo) -> None:
    """Shots per class (one count, or a list) drawn from the train split: at most its
    smallest class holds."""
    most = info.train_per_class
    if most is not None and max(as_list(shots)) > most:
        where = f"the smallest class of dataset {name} has at most {most} train samples"
        raise bad_value(key, f"at most {most} per class ({where})", shots)


def ood_warnings(
    oods: Mapping[str, Any], data: Mapping[str, Any], name: str, info: DatasetInfo
) -> list[str]:
    """Refuse an OOD probe the attack on dataset ``name`` cannot use (another modality's
    set, wherever the modality's list names it); warn where it skips the probe (the list
    leaves only the attacked dataset itself, ``pfm.attacks.probes.ood_dataset``). A
    modality with no probe listed is attacked without one."""
    modality = info.data_type
    candidates = ood_candidates(oods.get(modality))
    key = f"attacks.recovery.ood_datasets.{modality}"
    for ood in candidates:
        probe = describe(ood, data.get(ood) or {}, f"data.{ood}")
        if probe.data_type != modality:
            why = f"the OOD probe of {modality} dataset {name}; {ood} holds {probe.data_type}"
            raise bad_value(key, f"a dataset of modality {modality} ({why})", ood)
    if candidates and ood_dataset(candidates, name) is None:
        return [
            f"{key}: {name} is itself attacked; its recovery runs have no OOD probe (name "
            f"another {modality} dataset to measure one)"
        ]
    return []


def check_backbone(model: ModelParams, name: str, info: DatasetInfo) -> None:
    """Refuse the backbone dataset ``name``'s modality picks if it reads another modality,
    or cannot read ``model.input_size`` (``pfm.models.backbones.size_refusal``; only a
    resizable modality's input takes the size, ``pfm.specs.model_spec``). Checked where
    its config is known before training (``pfm.models.backbones.backbone_config``), and
    one whose ``config.vocab_size`` is not the size of the dataset's tokenizer."""
    backbone = model.backbone_for(info.data_type)
    config = backbone_config(backbone)
    if config is None:
        return
    modality = MODALITIES.get(info.data_type)
    try:
        check_modality(backbone, input_kind(config).data_type, info.data_type)
    except ValueError as error:
        key = f"model.{modality.backbone_param}"
        raise ParamError(f"{key}: on dataset {name}, {error.args[0]}") from None
    if info.tokenizer is not None:
        check_vocabulary(backbone, config, name, info.tokenizer, modality.backbone_param)
    if model.head == "answers":
        check_answer_head(model, backbone, config, name, info)
    if model.input_size is None or not modality.resizable:
        return
    refusal = size_refusal(config, model.input_size)
    if refusal is not None:
        raise ParamError(
            f"model.input_size: {model.input_size} px on dataset {name}, but backbone "
            f"{backbone!r} {refusal}"
        )


def check_answer_head(
    model: ModelParams, backbone: str, config: PretrainedConfig, name: str, info: DatasetInfo
) -> None:
    """Refuse ``model.head: answers`` (``pfm.models.answers``) where the head would not be
    the language model's next-token logits for dataset ``name``'s answer tokens."""
    if info.tokenizer is None:
        raise ParamError(
            f"model.head: answers reads each class's answer token, which text datasets "
            f"record; dataset {name} holds {info.data_type}"
        )
    try:
        check_next_token_readout(
            config, model.readout or token_layout(config).readout, model.final_layernorm
        )
    except ValueError as error:
        raise ParamError(f"{error.args[0]} (backbone {backbone!r}, dataset {name})") from None


def check_vocabulary(
    backbone: str, config: PretrainedConfig, name: str, tokenizer: str, param: str
) -> None:
    """Refuse backbone ``backbone`` (``model.<param>``) on dataset ``name`` where its
    vocabulary is not the one tokenizer ``tokenizer`` writes ids in."""
    expected = TOKENIZERS.get(tokenizer).vocab_size
    found = getattr(config, "vocab_size", None)
    if found != expected:
        raise ParamError(
            f"data.{name}.tokenizer: {tokenizer} writes ids of a {expected}-token vocabulary "
            f"but model.{param} {backbone!r} reads {found}: tokenise with the backbone's "
            f"tokenizer ({', '.join(TOKENIZERS)}) or pick a backbone of that vocabulary"
        )


def check_dataset_limits(
    datasets: Sequence[str],
    data: Mapping[str, Any],
    unlearn: UnlearnParams,
    evaluate: EvaluateParams,
    mia: MiaParams,
    recovery: RecoveryParams,
    model: ModelParams | None = None,
) -> list[str]:
    """Raise the first limit a listed dataset breaks (``ParamError``, one line naming the
    key, the dataset and the limit); return the warnings, one line each. ``model``: the
    backbones, checked against each dataset's modality (None: not checked)."""
    warnings: list[str] = []
    for name in datasets:
        info = describe(name, data.get(name) or {}, f"data.{name}")
        if model is not None:
            check_backbone(model, name, info)
        run = forget_sizes("unlearn", unlearn.k, unlearn.max_sets, name, info)
        forget_sizes("evaluate", evaluate.k, evaluate.max_sets, name, info)
        check_attacked("attacks.mia.k", mia.k, run, name, info)
        check_attacked("attacks.recovery.k", recovery.k, run, name, info)
        check_shots("attacks.recovery.shots", recovery.shots, name, info)
        check_shots("attacks.recovery.anchor_shots", recovery.anchor_shots, name, info)
        warnings += ood_warnings(recovery.ood_datasets, data, name, info)
    return warnings
