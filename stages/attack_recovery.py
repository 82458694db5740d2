"""Stage attack_recovery: the prompt-recovery / few-shot relearning attack on one
method's saved unlearned models (one dataset, one seed) and on the never-seen reference
of the same draws: the prompt model's is the attack_reference stage's, a baseline's is
``retrain``'s."""

import argparse
from pathlib import Path

from pfm.attacks import RecoveryParams
from pfm.attacks.draws import matching_draw, select_draws
from pfm.attacks.recovery import attack
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
    parser.add_argument("--prompt-reference", required=True, type=Path, help="never-seen pfm")
    parser.add_argument("--plain-reference", required=True, type=Path, help="retrain's folder")
    parser.add_argument("--out", required=True, type=Path, help="metrics JSON")
    parser.add_argument("--curves", required=True, type=Path, help="relearn-curve JSON")
    args = parser.parse_args()
    params = load_params()
    attacks = section(params, "attacks")
    config = from_mapping(RecoveryParams, section(attacks, "recovery"), "attacks.recovery")
    device = resolve_device(section(params, "train")["device"])
    dataset = load_prepared(args.data)
    manifest = read_manifest(args.models)
    draws, prompted = [], False
    for draw in select_draws(manifest, config.k, config.draws):
        model = load_model(args.models / draw["model"]).to(device)
        prompted = model.spec.with_prompts
        folder = args.prompt_reference if prompted else args.plain_reference
        reference = None  # retrain is its own never-seen reference
        if folder.resolve() != args.models.resolve():
            match = matching_draw(read_manifest(folder), draw["classes"])
            reference = load_model(folder / match["model"]).to(device)
        draws.append((tuple(draw["classes"]), model, reference))
    train, test = dataset.splits["train"], dataset.splits["test"]
    metrics, curves = attack(draws, train, test, config, args.seed, reference_curves=prompted)
    write_json(args.out, metrics)
    write_json(args.curves, curves)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.endswith(".mean")))


if __name__ == "__main__":
    run_stage(main)
