"""Stage attack: both attacks on every method's saved unlearned models on one dataset
(each seed), and on the never-seen prompt models (``retrain_prompt``) as a run of their
own, side by side in ``workers`` single-thread processes (``pfm.parallel``):

- membership inference on the forgotten classes, every registered variant pooled over
  the attacked draws, with one ``units`` record per draw (``pfm.attacks.mia``);
- prompt recovery / few-shot relearning on each attacked draw of every k and on its
  never-seen reference, under every capability that fits the model
  (``pfm.attacks.recovery``, ``pfm.attacks.targets``), each (model, capability) attacked
  once; its out-of-distribution probe is ``attacks.recovery.ood_dataset`` built from its
  ``data.<name>`` params.

One stage rather than one per attack: a stage start costs ~12 s of imports, and in one
pool the short MIA runs fill the core the long prompt-model attacks leave idle. One
process per (dataset, seed) — dvc.yaml's unit of work, ``--seed``; without it every seed
of params. One metrics file per (attack, method, seed), one relearn-curve file per
(method, seed)."""

import argparse
from functools import partial
from pathlib import Path

import torch

from pfm.attacks import MiaParams, RecoveryParams
from pfm.attacks.draws import select_draws
from pfm.attacks.mia import attack as mia_attack
from pfm.attacks.recovery import (
    AttackData,
    DrawResult,
    Outcome,
    attack_saved,
    ood_images,
    summarise,
)
from pfm.attacks.targets import (
    RecoveryRun,
    Target,
    distinct_attacks,
    method_folder,
    recovery_runs,
    with_prompt_references,
)
from pfm.cli import run_stage, write_run_metrics
from pfm.config import Device, from_mapping, load_params, matrix, matrix_runs, one_key, section
from pfm.data import PreparedDataset, load_prepared
from pfm.evaluate import pool
from pfm.files import staged, write_json
from pfm.models.checkpoint import load_model
from pfm.parallel import run_all
from pfm.train import resolve_device
from pfm.unlearn.manifest import read_manifest, run_folder

Outcomes = dict[tuple[Target, str], dict[int, Outcome]]  # (target, capability) → m → …


def membership(
    dataset: PreparedDataset,
    config: MiaParams,
    device: torch.device,
    folder: Path,
    seed: int,
    out: Path,
) -> None:
    """Every MIA variant on the attacked draws of one (method, seed) folder, to ``out``:
    pooled keys and one unit per draw, ``{"classes", "k", "mia.<variant>"…}``."""
    train, test = dataset.splits["train"], dataset.splits["test"]
    manifest = read_manifest(folder)
    units = []
    for draw in select_draws(manifest, config.k, config.draws):
        model = load_model(folder / draw["model"]).to(device)
        values = mia_attack(model, train, test, tuple(draw["classes"]), config, seed)
        units.append({"classes": list(draw["classes"]), "k": draw["k"], **values})
    per_draw = [{key: v for key, v in unit.items() if key.startswith("mia.")} for unit in units]
    metrics = {"mia_k": config.k, "mia_draws": len(units), **pool(per_draw), "units": units}
    write_run_metrics(out, metrics, f"{dataset.name} {manifest['method']} seed {seed}", ".mean")


def draw_results(
    run: RecoveryRun, outcomes: Outcomes, recovery: RecoveryParams
) -> list[DrawResult]:
    """Each of ``run``'s draws under each capability that fits it, beside its reference."""
    return [
        DrawResult(attacked.classes, cap, outcomes[attacked, cap], outcomes[reference, cap])
        for attacked, reference in run.draws
        for cap in recovery.capabilities_for(run.prompted)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--models", required=True, type=Path, help="the unlearn stage's folder")
    parser.add_argument(
        "--prompt-reference", required=True, type=Path, help="train's never-seen prompt models"
    )
    parser.add_argument("--mia", required=True, type=Path, help="folder for MIA metrics")
    parser.add_argument("--recovery", required=True, type=Path, help="folder for recovery metrics")
    parser.add_argument("--curves", required=True, type=Path, help="folder for relearn curves")
    parser.add_argument("--seed", type=int, help="this seed of params' seeds only (default: all)")
    args = parser.parse_args()
    params = load_params()
    attacks = section(params, "attacks")
    mia = from_mapping(MiaParams, section(attacks, "mia"), "attacks.mia")
    recovery = from_mapping(RecoveryParams, section(attacks, "recovery"), "attacks.recovery")
    device = resolve_device(one_key(section(params, "train"), "device", Device, "train", "auto"))
    workers = matrix(params).workers
    dataset = load_prepared(args.data)
    runs = with_prompt_references(matrix_runs(params, args.seed), args.prompt_reference)
    planned = recovery_runs(args.models, args.prompt_reference, runs, recovery.k, recovery.draws)
    data = AttackData(
        dataset.splits["train"], dataset.splits["val"], dataset.splits["test"],
        ood_images(recovery.ood_dataset, params.get("data", {}), dataset),
    )  # fmt: skip
    attacks_to_run = distinct_attacks(planned, recovery.capabilities_for)
    with staged() as stage:  # no output changes unless every attack succeeded
        jobs = [
            partial(attack_saved, t.path, t.classes, t.seed, cap, data, recovery, device)
            for t, cap in attacks_to_run
        ] + [
            partial(
                membership, dataset, mia, device,
                method_folder(args.models, args.prompt_reference, method, seed), seed,
                stage.path(run_folder(args.mia, method, seed).with_suffix(".json")),
            )
            for method, seed in runs
        ]  # fmt: skip
        results = run_all(jobs, workers, device)
        outcomes = dict(zip(attacks_to_run, results[: len(attacks_to_run)], strict=True))
        for run in planned:
            if not recovery.capabilities_for(run.prompted):
                continue  # no listed capability fits this run's model family: nothing attacked
            metrics, curves = summarise(draw_results(run, outcomes, recovery), recovery)
            curves_out = run_folder(args.curves, run.method, run.seed).with_suffix(".json")
            write_json(stage.path(curves_out), curves)
            out = run_folder(args.recovery, run.method, run.seed).with_suffix(".json")
            label = f"{dataset.name} {run.method} seed {run.seed}"
            write_run_metrics(stage.path(out), metrics, label, "residual.mean")


if __name__ == "__main__":
    run_stage(main)
