"""Stage unlearn: one unlearning method on one dataset and seed — the forget-k protocol on
the draws every method shares, with its cost — saving each unlearned model it evaluated
and a manifest of them."""

import argparse
from pathlib import Path

from pfm.batches import SplitTensors
from pfm.cli import run_stage
from pfm.config import load_params, section
from pfm.cost import model_cost
from pfm.data import load_prepared
from pfm.evaluate import forget_k, k_values, mode_accuracies
from pfm.files import write_json
from pfm.models.checkpoint import load_model
from pfm.train import resolve_device
from pfm.unlearn import METHODS, read_params, unlearner
from pfm.unlearn.manifest import keeping, write_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--prompt-model", required=True, type=Path, help="base of `pfm`")
    parser.add_argument("--plain-model", required=True, type=Path, help="base of baselines")
    parser.add_argument("--models", required=True, type=Path, help="folder for unlearned models")
    parser.add_argument("--out", required=True, type=Path, help="metrics JSON")
    args = parser.parse_args()
    params = load_params()
    config, recipe = read_params(section(params, "unlearn"), args.method)
    device = resolve_device(section(params, "train")["device"])
    dataset = load_prepared(args.data)
    base = args.prompt_model if METHODS.get(args.method).base == "prompt" else args.plain_model
    model = load_model(base).to(device)
    if model.num_classes != dataset.num_classes:
        raise ValueError(
            f"{base} has {model.num_classes} classes, {args.data} has {dataset.num_classes}"
        )
    test = SplitTensors(dataset.splits["test"], model.input_size, device)
    ks = list(config.k) if config.k is not None else k_values(dataset.num_classes)
    metrics: dict[str, float] = {"num_classes": dataset.num_classes}
    accuracy = mode_accuracies(model, test, ["full_bank"], config.batch_size, args.seed)
    metrics["no_forget.full_bank.acc"] = accuracy["full_bank"]
    draws: list[dict] = []
    run = keeping(
        unlearner(args.method, model, dataset.splits["train"], recipe, args.seed),
        args.models,
        draws,
    )
    metrics.update(
        forget_k(run, test, dataset.num_classes, ks, config.max_sets, args.seed, config.batch_size)
    )
    write_manifest(args.models, dataset.name, args.method, args.seed, base, draws)
    # deployment FLOPs of an unlearned model: fewer prompts after `pfm`, deep prefixes
    # after PI-Prefix, the base model's own for the rest
    unlearned = load_model(args.models / draws[0]["model"]).to(device)
    flops = model_cost(unlearned, next(test.batches(2))[0], device)["cost.flops_per_sample"]
    metrics["cost.flops_per_sample"] = flops
    write_json(args.out, metrics)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.endswith(".mean")))


if __name__ == "__main__":
    run_stage(main)
