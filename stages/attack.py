"""Stage attack: both attacks on every method's saved unlearned models on one dataset
(each seed), side by side in ``workers`` single-thread processes (``pfm.parallel``):

- membership inference on the forgotten classes, every registered variant pooled over
  the attacked draws (``pfm.attacks.mia``);
- prompt recovery / few-shot relearning on each attacked draw and on its never-seen
  reference (``pfm.attacks.recovery``, ``pfm.attacks.targets``), each model attacked once.

One stage rather than one per attack: a stage start costs ~12 s of imports, and in one
pool the short MIA runs fill the core the long prompt-model attacks leave idle. One
metrics file per (attack, method, seed), one relearn-curve file per (method, seed)."""

import argparse
from functools import partial
from pathlib import Path

import torch

from pfm.attacks import MiaParams, RecoveryParams
from pfm.attacks.draws import pool, select_draws
from pfm.attacks.mia import attack as mia_attack
from pfm.attacks.recovery import attack_saved, summarise
from pfm.attacks.targets import distinct_targets, recovery_runs
from pfm.cli import run_stage, write_run_metrics
from pfm.config import from_mapping, load_params, matrix_runs, section
from pfm.data import PreparedDataset, load_prepared
from pfm.files import write_json
from pfm.models.checkpoint import load_model
from pfm.parallel import run_all
from pfm.train import resolve_device
from pfm.unlearn.manifest import read_manifest, run_folder


def membership(
    dataset: PreparedDataset,
    config: MiaParams,
    device: torch.device,
    folder: Path,
    seed: int,
    out: Path,
) -> None:
    """Every MIA variant on the attacked draws of one (method, seed) folder, to ``out``."""
    train, test = dataset.splits["train"], dataset.splits["test"]
    manifest = read_manifest(folder)
    per_draw = []
    for draw in select_draws(manifest, config.k, config.draws):
        model = load_model(folder / draw["model"]).to(device)
        per_draw.append(mia_attack(model, train, test, tuple(draw["classes"]), config, seed))
    metrics = {"mia_k": config.k, "mia_draws": len(per_draw), **pool(per_draw)}
    write_run_metrics(out, metrics, f"{dataset.name} {manifest['method']} seed {seed}", ".mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--models", required=True, type=Path, help="the unlearn stage's folder")
    parser.add_argument(
        "--prompt-reference", required=True, type=Path, help="train's never-seen references"
    )
    parser.add_argument("--mia", required=True, type=Path, help="folder for MIA metrics")
    parser.add_argument("--recovery", required=True, type=Path, help="folder for recovery metrics")
    parser.add_argument("--curves", required=True, type=Path, help="folder for relearn curves")
    args = parser.parse_args()
    params = load_params()
    attacks = section(params, "attacks")
    mia = from_mapping(MiaParams, section(attacks, "mia"), "attacks.mia")
    recovery = from_mapping(RecoveryParams, section(attacks, "recovery"), "attacks.recovery")
    device = resolve_device(section(params, "train")["device"])
    dataset = load_prepared(args.data)
    train, test = dataset.splits["train"], dataset.splits["test"]
    runs = matrix_runs(params)
    planned = recovery_runs(args.models, args.prompt_reference, runs, recovery.k, recovery.draws)
    targets = distinct_targets(planned)
    jobs = [
        partial(attack_saved, t.path, t.classes, t.seed, train, test, recovery, device)
        for t in targets
    ] + [
        partial(
            membership, dataset, mia, device, run_folder(args.models, method, seed), seed,
            run_folder(args.mia, method, seed).with_suffix(".json"),
        )
        for method, seed in runs
    ]  # fmt: skip
    results = run_all(jobs, params["workers"], device)
    outcomes = dict(zip(targets, results[: len(targets)], strict=True))
    for run in planned:
        pairs = [(outcomes[attacked], outcomes[reference]) for attacked, reference in run.draws]
        metrics, curves = summarise(pairs, recovery, reference_curves=run.prompted)
        write_json(run_folder(args.curves, run.method, run.seed).with_suffix(".json"), curves)
        out = run_folder(args.recovery, run.method, run.seed).with_suffix(".json")
        write_run_metrics(out, metrics, f"{dataset.name} {run.method} seed {run.seed}")


if __name__ == "__main__":
    run_stage(main)
