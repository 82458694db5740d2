"""Stage attack_mia: membership inference on the forgotten classes of one method's saved
unlearned models (one dataset, one seed) — every registered variant, pooled over the
attacked draws."""

import argparse
from pathlib import Path

from pfm.attacks import MiaParams
from pfm.attacks.draws import pool, select_draws
from pfm.attacks.mia import attack
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, section
from pfm.data import load_prepared
from pfm.files import write_json
from pfm.models.checkpoint import load_model
from pfm.train import resolve_device
from pfm.unlearn.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--models", required=True, type=Path, help="unlearned-model folder")
    parser.add_argument("--out", required=True, type=Path, help="metrics JSON")
    args = parser.parse_args()
    params = load_params()
    config = from_mapping(MiaParams, section(section(params, "attacks"), "mia"), "attacks.mia")
    device = resolve_device(section(params, "train")["device"])
    dataset = load_prepared(args.data)
    manifest = read_manifest(args.models)
    train, test = dataset.splits["train"], dataset.splits["test"]
    per_draw = []
    for draw in select_draws(manifest, config.k, config.draws):
        model = load_model(args.models / draw["model"]).to(device)
        per_draw.append(attack(model, train, test, tuple(draw["classes"]), config, args.seed))
    metrics = {"mia_k": config.k, "mia_draws": len(per_draw), **pool(per_draw)}
    write_json(args.out, metrics)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.endswith(".mean")))


if __name__ == "__main__":
    run_stage(main)
