"""One model of stage train fitted with its outputs: the trained model file, its
resumable checkpoint, its metrics and its per-epoch history.

Everything written follows from the checkpoint, so a finished run resumed with no epoch
left (another model's param changed) rewrites the same bytes."""

from dataclasses import dataclass, replace
from pathlib import Path

from pfm.batches import SplitTensors
from pfm.cost import optimizer_steps, peak_memory_bytes
from pfm.data import PreparedDataset
from pfm.files import Staging, write_json
from pfm.losses import plain_objective, prompt_objective
from pfm.models.checkpoint import save_model
from pfm.models.prompted import ModelSpec, build_model, trainable_parameters
from pfm.specs import check_modality
from pfm.train import TrainConfig, resolve_device, resume_key, train


@dataclass(frozen=True)
class Outputs:
    """Where one fitted model's files go."""

    model: Path
    checkpoint: Path
    metrics: Path
    history: Path


def staged_outputs(outputs: Outputs, stage: Staging) -> Outputs:
    """``outputs`` written aside until every run of the stage has succeeded; the
    checkpoint stays in place, so a failed stage still resumes."""
    return replace(
        outputs,
        model=stage.path(outputs.model),
        metrics=stage.path(outputs.metrics),
        history=stage.path(outputs.history),
    )


def fit(
    outputs: Outputs,
    spec: ModelSpec,
    config: TrainConfig,
    dataset: PreparedDataset,
    data_digest: str,
    seed: int,
) -> None:
    """The model of ``spec`` (the prompt model, or the plain one where ``spec`` has no
    prompts): trained on ``dataset``'s train split, validated on its val split, saved,
    with its metrics and per-epoch history."""
    model = build_model(spec, seed)
    check_modality(spec.backbone, model.data_type, dataset.data_type)
    device = resolve_device(config.device)
    train_data, val_data = (
        SplitTensors(dataset.splits[s], model.input_size, device) for s in ("train", "val")
    )
    kind = "prompt" if spec.with_prompts else "plain"
    key = resume_key(spec, config, seed, kind, data_digest)
    objective = prompt_objective(config.kl_weight) if spec.with_prompts else plain_objective
    result = train(model, objective, train_data, val_data, config, seed, outputs.checkpoint, key)
    save_model(model, outputs.model)
    last = result.history[-1] if result.history else {}
    write_json(outputs.metrics, {
        "epochs": config.epochs,
        "train_seconds": result.train_seconds,
        "trainable_params": trainable_parameters(model),
        "optimizer_steps": optimizer_steps(len(train_data), config.batch_size, config.epochs),
        "peak_memory_bytes": last.get("peak_memory_bytes", peak_memory_bytes(device)),
        **{f"final.{k}": v for k, v in last.items() if k.startswith("val.")},
    })  # fmt: skip
    write_json(outputs.history, {"epochs": result.history})
