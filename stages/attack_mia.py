"""Stage attack_mia: membership inference on the forgotten classes of every method's
saved unlearned models on one dataset (each seed) — every registered variant, pooled
over the attacked draws, one metrics file per (method, seed); the (method, seed) runs
spread over ``workers`` single-thread processes (``pfm.parallel``)."""

import argparse
from functools import partial
from pathlib import Path

import torch

from pfm.attacks import MiaParams
from pfm.attacks.draws import pool, select_draws
from pfm.attacks.mia import attack
from pfm.cli import run_stage, write_run_metrics
from pfm.config import from_mapping, load_params, matrix_runs, section
from pfm.data import PreparedDataset, load_prepared
from pfm.models.checkpoint import load_model
from pfm.parallel import run_all
from pfm.train import resolve_device
from pfm.unlearn.manifest import read_manifest, run_folder


def attack_one(
    dataset: PreparedDataset,
    config: MiaParams,
    device: torch.device,
    folder: Path,
    seed: int,
    out: Path,
) -> None:
    """Every variant on the attacked draws of one (method, seed) folder, pooled to ``out``."""
    train, test = dataset.splits["train"], dataset.splits["test"]
    manifest = read_manifest(folder)
    per_draw = []
    for draw in select_draws(manifest, config.k, config.draws):
        model = load_model(folder / draw["model"]).to(device)
        per_draw.append(attack(model, train, test, tuple(draw["classes"]), config, seed))
    metrics = {"mia_k": config.k, "mia_draws": len(per_draw), **pool(per_draw)}
    write_run_metrics(out, metrics, f"{dataset.name} {manifest['method']} seed {seed}", ".mean")


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
    runs = matrix_runs(params)
    for method, seed in runs:
        read_manifest(run_folder(args.models, method, seed))  # all there before any runs
    jobs = [
        partial(
            attack_one, dataset, config, device, run_folder(args.models, method, seed), seed,
            run_folder(args.out, method, seed).with_suffix(".json"),
        )
        for method, seed in runs
    ]  # fmt: skip
    run_all(jobs, params["workers"], device)


if __name__ == "__main__":
    run_stage(main)
