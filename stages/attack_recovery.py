"""Stage attack_recovery: the prompt-recovery / few-shot relearning attack on every
method's saved unlearned models on one dataset (each seed), and on the never-seen
reference of the same draws: the prompt model's trained beside it (stage ``train``), a
baseline's is ``retrain``'s, attacked once for all of them. One metrics file and one
relearn-curve file per (method, seed)."""

import argparse
from pathlib import Path

from pfm.attacks import RecoveryParams
from pfm.attacks.draws import matching_draw, select_draws
from pfm.attacks.recovery import ReferenceAttacks, attack
from pfm.cli import run_stage, write_run_metrics
from pfm.config import from_mapping, load_params, matrix_runs, section
from pfm.data import load_prepared
from pfm.files import write_json
from pfm.models.checkpoint import load_model
from pfm.train import resolve_device
from pfm.unlearn.manifest import read_manifest, run_folder

PLAIN_REFERENCE = "retrain"  # the baselines' never-seen model: trained without the classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--models", required=True, type=Path, help="the unlearn stage's folder")
    parser.add_argument(
        "--prompt-reference", required=True, type=Path, help="train's never-seen references"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics JSON")
    parser.add_argument("--curves", required=True, type=Path, help="folder for relearn curves")
    args = parser.parse_args()
    params = load_params()
    attacks = section(params, "attacks")
    config = from_mapping(RecoveryParams, section(attacks, "recovery"), "attacks.recovery")
    device = resolve_device(section(params, "train")["device"])
    dataset = load_prepared(args.data)
    train, test = dataset.splits["train"], dataset.splits["test"]
    references = ReferenceAttacks(train, test, config, device)
    for method, seed in matrix_runs(params):
        folder = run_folder(args.models, method, seed)
        draws, prompted = [], False
        for draw in select_draws(read_manifest(folder), config.k, config.draws):
            classes = tuple(draw["classes"])
            model = load_model(folder / draw["model"]).to(device)
            prompted = model.spec.with_prompts
            reference = None  # retrain is its own never-seen reference
            if prompted or method != PLAIN_REFERENCE:
                where = (
                    args.prompt_reference / f"seed{seed}"
                    if prompted
                    else run_folder(args.models, PLAIN_REFERENCE, seed)
                )
                match = matching_draw(read_manifest(where), classes)
                reference = references(where / match["model"], classes, seed)
            draws.append((classes, model, reference))
        metrics, curves = attack(draws, train, test, config, seed, reference_curves=prompted)
        write_json(run_folder(args.curves, method, seed).with_suffix(".json"), curves)
        out = run_folder(args.out, method, seed).with_suffix(".json")
        write_run_metrics(out, metrics, f"{dataset.name} {method} seed {seed}")


if __name__ == "__main__":
    run_stage(main)
