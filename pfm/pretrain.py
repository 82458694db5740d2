"""Supervised pretraining of a small backbone on data disjoint from the benchmark.

The pre-forgettable method assumes a frozen *pretrained* encoder whose representations
the prompts steer (the paper: ImageNet-21k ViT-B/16 for MedMNIST). No such weights
install here, so the ``pretrain`` stage makes the analogue: every weight of a registered
architecture is trained with a throwaway linear head on CLS (cross-entropy through the
one training loop, ``plain_objective``) on a dataset whose classes the benchmark never
uses — Fashion-MNIST for ``digits``. The encoder alone is saved with ``save_pretrained``
and loads through ``from_pretrained(path)``, the code path of ``google/vit-base-…``.

Beside the weights, ``pretraining.json`` records the dataset and class names the
backbone saw; ``check_disjoint`` refuses a benchmark that shares one of them.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pfm.batches import SplitTensors
from pfm.config import Count, Device, Natural, Rate
from pfm.data import PreparedDataset, build_dataset
from pfm.data.registry import DatasetName
from pfm.evaluate import mode_accuracies
from pfm.files import read_json, write_atomic_dir
from pfm.losses import plain_objective
from pfm.models.backbones import BackboneName
from pfm.models.prompted import ModelSpec, PromptedClassifier, build_model
from pfm.train import TrainConfig, TrainResult, resolve_device, resume_key, train

PROVENANCE_FILE = "pretraining.json"


@dataclass(frozen=True)
class PretrainParams:
    """The ``pretrain`` section of params.yaml."""

    architecture: BackboneName  # a registered backbone, trained from its random init
    dataset: DatasetName  # a registered dataset disjoint from every benchmark using the result
    epochs: Count
    batch_size: Count
    lr: Rate
    data: Mapping[str, Any] = field(default_factory=dict)  # the dataset builder's options
    init_seed: Natural = 0
    seed: Natural = 0
    device: Device = "auto"


def pretrain_spec(params: PretrainParams, num_classes: int) -> ModelSpec:
    """No prompts, no LoRA: every encoder weight trains. CLS is read after the final
    layernorm, as a ViT classifier is pretrained; the benchmark reads it as it chooses."""
    return ModelSpec(
        backbone=params.architecture,
        num_classes=num_classes,
        with_prompts=False,
        final_layernorm=True,
        init_seed=params.init_seed,
        tuning="full",
    )


def pretrain(
    params: PretrainParams, checkpoint: Path | None
) -> tuple[PromptedClassifier, PreparedDataset, TrainResult, dict[str, float]]:
    """Build ``params.dataset`` (and no other) and train the backbone on it.

    Returns the trained model, the dataset, the training record and test accuracy."""
    dataset = build_dataset(params.dataset, params.data, "pretrain.data")
    model = build_model(pretrain_spec(params, dataset.num_classes), params.seed)
    device = resolve_device(params.device)
    train_data, val_data, test_data = (
        SplitTensors(dataset.splits[s], model.input_size, device) for s in ("train", "val", "test")
    )
    config = TrainConfig(
        epochs=params.epochs,
        batch_size=params.batch_size,
        lr=params.lr,
        eval_modes=("none",),
        device=params.device,
    )
    identity = ("pretrain", params.dataset, json.dumps(dict(params.data), sort_keys=True))
    key = resume_key(model.spec, config, params.seed, *identity)
    result = train(
        model, plain_objective, train_data, val_data, config, params.seed, checkpoint, key
    )
    test = mode_accuracies(model, test_data, ("none",), config.eval_batch_size, params.seed)
    return model, dataset, result, {"test.acc": test["none"]}


def save_backbone(model: PromptedClassifier, dataset: PreparedDataset, out_dir: str | Path) -> None:
    """The encoder in Hugging Face format plus what it was trained on (the head is
    dropped: it classifies the pretraining classes, which no benchmark uses)."""

    def write(tmp: Path) -> None:
        model.backbone.save_pretrained(tmp)
        provenance = {"dataset": dataset.name, "class_names": list(dataset.class_names)}
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")

    write_atomic_dir(out_dir, write)


def pretraining_classes(backbone: str) -> tuple[str, set[str]] | None:
    """(dataset, class names) a local backbone directory was pretrained on, if recorded."""
    path = Path(backbone) / PROVENANCE_FILE
    if not path.is_file():
        return None
    record = read_json(path)
    return record["dataset"], {_normal(n) for n in record["class_names"]}


def check_disjoint(backbone: str, dataset: PreparedDataset) -> None:
    """Refuse a benchmark whose dataset or any class the backbone was pretrained on: a
    prompt model must not forget a class its frozen features were trained to separate."""
    seen = pretraining_classes(backbone)
    if seen is None:
        return
    source, classes = seen
    shared = sorted(classes & {_normal(n) for n in dataset.class_names})
    if source == dataset.name or shared:
        raise ValueError(
            f"backbone {backbone} was pretrained on {source!r}, which overlaps the benchmark "
            f"{dataset.name!r} (shared classes: {shared or 'the whole dataset'}); pretrain it "
            f"on a disjoint dataset (params: pretrain.dataset)"
        )


def _normal(name: str) -> str:
    return " ".join(name.lower().split())
