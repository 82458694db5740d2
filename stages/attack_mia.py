"""Stage attack_mia: membership inference on the forgotten classes of every method's
saved unlearned models on one dataset (each seed) — every registered variant, pooled
over the attacked draws, one metrics file per (method, seed)."""

import argparse
from pathlib import Path

from pfm.attacks import MiaParams
from pfm.attacks.draws import pool, select_draws
from pfm.attacks.mia import attack
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, matrix_runs, section
from pfm.data import load_prepared
from pfm.files import write_json
from pfm.models.checkpoint import load_model
from pfm.train import resolve_device
from pfm.unlearn.manifest import read_manifest, run_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--models", required=True, type=Path, help="the unlearn stage's folder")
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics JSON")
    args = parser.parse_args()
    params = load_params()
    config = from_mapping(MiaParams, section(section(params, "attacks"), "mia"), "attacks.mia")
    device = resolve_device(section(params, "train")["device"])
    dataset = load_prepared(args.data)
    train, test = dataset.splits["train"], dataset.splits["test"]
    for method, seed in matrix_runs(params):
        folder = run_folder(args.models, method, seed)
        manifest = read_manifest(folder)
        per_draw = []
        for draw in select_draws(manifest, config.k, config.draws):
            model = load_model(folder / draw["model"]).to(device)
            per_draw.append(attack(model, train, test, tuple(draw["classes"]), config, seed))
        metrics = {"mia_k": config.k, "mia_draws": len(per_draw), **pool(per_draw)}
        write_json(run_folder(args.out, method, seed).with_suffix(".json"), metrics)
        means = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.endswith(".mean"))
        print(f"{dataset.name} {method} seed {seed}: {means}", flush=True)


if __name__ == "__main__":
    run_stage(main)
