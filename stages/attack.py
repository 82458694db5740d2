"""Stage attack: both attacks — membership inference and prompt recovery / few-shot
relearning (``pfm.attacks.suite``) — on every method's saved unlearned models on one
dataset, and on the never-seen prompt models (``retrain_prompt``) as a run of their own.
The recovery attack's out-of-distribution probe is ``attacks.recovery.ood_datasets``,
built from its ``data.<name>`` params; its budget is the dataset's own where
``attacks.recovery.by_dataset`` lists one.

One stage rather than one per attack: a stage start costs ~12 s of imports, and in one
pool the short MIA runs fill the core the long prompt-model attacks leave idle. One
process per (dataset, seed) — dvc.yaml's unit of work, ``--seed``; without it every seed
of params."""

import argparse
from pathlib import Path

from pfm.attacks import MiaParams, RecoveryParams
from pfm.attacks.suite import AttackFolders, attack_all
from pfm.attacks.targets import with_prompt_references
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, matrix, matrix_runs, section
from pfm.data import load_prepared
from pfm.files import staged
from pfm.train import train_device


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
    dataset = load_prepared(args.data)
    recovery = from_mapping(RecoveryParams, section(attacks, "recovery"), "attacks.recovery")
    recovery = recovery.for_dataset(dataset.name)
    device, workers = train_device(params), matrix(params).workers
    runs = with_prompt_references(matrix_runs(params, args.seed), args.prompt_reference)
    folders = AttackFolders(
        args.models, args.prompt_reference, args.mia, args.recovery, args.curves
    )
    with staged(args.mia, args.recovery, args.curves) as stage:  # all or nothing changes
        attack_all(
            dataset, runs, folders, mia, recovery, params.get("data", {}), workers, device,
            stage.path,
        )  # fmt: skip


if __name__ == "__main__":
    run_stage(main, "attack")
