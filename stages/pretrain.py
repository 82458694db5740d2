"""Stage pretrain: train a small backbone on a dataset disjoint from the benchmark and save
it as a Hugging Face directory that ``model.backbone`` can name."""

import argparse
from pathlib import Path

from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, section
from pfm.files import write_json
from pfm.models.prompted import trainable_parameters
from pfm.pretrain import PretrainParams, pretrain, save_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="backbone directory")
    parser.add_argument("--checkpoint", required=True, type=Path, help="resumable state")
    parser.add_argument("--metrics", required=True, type=Path)
    args = parser.parse_args()
    params = from_mapping(PretrainParams, section(load_params(), "pretrain"), "pretrain")
    model, dataset, result, test = pretrain(params, args.checkpoint)
    save_backbone(model, dataset, args.out)
    last = result.history[-1] if result.history else {}
    write_json(args.metrics, {
        "epochs": params.epochs,
        "train_seconds": result.train_seconds,
        "trainable_params": trainable_parameters(model),
        **({"final.val.acc": last["val.none"]} if last else {}),
        **test,
    })  # fmt: skip
    print(f"pretrained {params.architecture} on {dataset.name}: {test} → {args.out}")


if __name__ == "__main__":
    run_stage(main, "pretrain")
