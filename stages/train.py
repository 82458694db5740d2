"""Stage train / train_base: fit the pre-forgettable prompt model (``--kind prompt``,
params ``train``) or the baselines' plain classifier — same backbone, adapters and head,
no prompts, cross-entropy (``--kind plain``, params ``train_base``) — on one prepared
dataset and seed, with the one training loop."""

import argparse
from pathlib import Path

from pfm.batches import SplitTensors
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, section
from pfm.cost import optimizer_steps, peak_memory_bytes
from pfm.data import load_prepared
from pfm.data.prepared import ARRAYS_FILE
from pfm.files import file_digest, write_json
from pfm.losses import plain_objective, prompt_objective
from pfm.models.checkpoint import save_model
from pfm.models.prompted import build_model, trainable_parameters
from pfm.pretrain import check_disjoint
from pfm.specs import check_modality, model_spec
from pfm.train import TrainConfig, resolve_device, resume_key, train

KINDS = {"prompt": "train", "plain": "train_base"}  # model kind → its params section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=sorted(KINDS), default="prompt")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--model", required=True, type=Path, help="trained model file")
    parser.add_argument("--checkpoint", required=True, type=Path, help="resumable state")
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--history", required=True, type=Path, help="per-epoch log (JSON)")
    args = parser.parse_args()
    params = load_params()
    config = from_mapping(TrainConfig, section(params, KINDS[args.kind]), KINDS[args.kind])
    dataset = load_prepared(args.data)
    prompted = args.kind == "prompt"
    spec = model_spec(section(params, "model"), dataset.num_classes, prompted, dataset.data_type)
    check_disjoint(spec.backbone, dataset)
    model = build_model(spec, args.seed)
    check_modality(spec.backbone, model.data_type, dataset.data_type)
    device = resolve_device(config.device)
    train_data, val_data = (
        SplitTensors(dataset.splits[s], model.input_size, device) for s in ("train", "val")
    )
    key = resume_key(spec, config, args.seed, args.kind, file_digest(args.data / ARRAYS_FILE))
    result = train(
        model,
        prompt_objective(config.kl_weight) if prompted else plain_objective,
        train_data,
        val_data,
        config,
        args.seed,
        args.checkpoint,
        key,
    )
    save_model(model, args.model)
    last = result.history[-1] if result.history else {}
    write_json(args.metrics, {
        "epochs": config.epochs,
        "train_seconds": result.train_seconds,
        "trainable_params": trainable_parameters(model),
        "optimizer_steps": optimizer_steps(len(train_data), config.batch_size, config.epochs),
        "peak_memory_bytes": peak_memory_bytes(device),
        **{f"final.{k}": v for k, v in last.items() if k.startswith("val.")},
    })  # fmt: skip
    write_json(args.history, {"epochs": result.history})


if __name__ == "__main__":
    run_stage(main)
