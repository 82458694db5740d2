"""Stage attack_reference: the prompt-recovery attack's never-seen reference for one
dataset and seed — per attacked draw of the prompt model, a prompt model trained from
scratch without the draw's classes (params ``train``), saved with a manifest like the
unlearn stage's."""

import argparse
from pathlib import Path

from pfm.attacks import RecoveryParams
from pfm.attacks.draws import select_draws
from pfm.attacks.reference import never_seen
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, section
from pfm.data import load_prepared
from pfm.models.checkpoint import load_model, save_model
from pfm.train import TrainConfig, resolve_device
from pfm.unlearn.manifest import draw_file, read_manifest, write_manifest

METHOD = "never_seen"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--prompt-models", required=True, type=Path, help="pfm's unlearned")
    parser.add_argument("--out", required=True, type=Path, help="folder for reference models")
    args = parser.parse_args()
    params = load_params()
    attacks = section(params, "attacks")
    config = from_mapping(RecoveryParams, section(attacks, "recovery"), "attacks.recovery")
    recipe = from_mapping(TrainConfig, section(params, "train"), "train")
    device = resolve_device(recipe.device)
    dataset = load_prepared(args.data)
    manifest = read_manifest(args.prompt_models)
    draws = []
    for draw in select_draws(manifest, config.k, config.draws):
        classes = tuple(draw["classes"])
        spec = load_model(args.prompt_models / draw["model"]).spec
        model = never_seen(spec, classes, dataset.splits["train"], recipe, args.seed, device)
        save_model(model, args.out / draw_file(classes))
        draws.append({"k": len(classes), "classes": list(classes), "model": draw_file(classes)})
        print(f"never-seen reference without {list(classes)} → {args.out / draw_file(classes)}")
    write_manifest(args.out, dataset.name, METHOD, args.seed, Path(manifest["base_model"]), draws)


if __name__ == "__main__":
    run_stage(main)
