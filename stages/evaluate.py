"""Stage evaluate: the prompt model's no-forget accuracy per inference mode and the
forget-k protocol (its forgetting through the same runner as every baseline); on a
dataset with a ``real`` split, its transfer keys too (``real.*``)."""

import argparse
from pathlib import Path
from typing import Any

from pfm.batches import SplitTensors
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, section
from pfm.cost import model_cost
from pfm.data import load_prepared
from pfm.evaluate import forget_k, forget_plan, k_values, mode_accuracies, transfer_metrics
from pfm.files import write_json
from pfm.models.checkpoint import load_model_for
from pfm.specs import EvaluateParams
from pfm.train import train_device
from pfm.unlearn import unlearner
from pfm.unlearn.prompt_forget import PromptForgetRecipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--out", required=True, type=Path, help="metrics JSON")
    args = parser.parse_args()
    params = load_params()
    config = from_mapping(EvaluateParams, section(params, "evaluate"), "evaluate")
    pfm_recipe = section(section(params, "unlearn"), "pfm")
    recipe = from_mapping(PromptForgetRecipe, pfm_recipe, "unlearn.pfm")
    device = train_device(params)
    dataset = load_prepared(args.data)
    model = load_model_for(args.model, dataset.name, dataset.num_classes, device)
    test = SplitTensors(dataset.splits["test"], model.input_size, device)
    ks = list(config.k) if config.k is not None else k_values(dataset.num_classes)
    metrics: dict[str, Any] = {"num_classes": dataset.num_classes}
    precision = config.precision
    accuracies = mode_accuracies(model, test, config.modes, config.batch_size, args.seed, precision)
    metrics.update({f"no_forget.{mode}.acc": acc for mode, acc in accuracies.items()})
    unlearn = unlearner("pfm", model, None, recipe, args.seed, precision)  # pfm reads no data
    plan = forget_plan(model.num_classes, ks, config.max_sets, args.seed)
    metrics.update(forget_k(unlearn, test, plan, args.seed, config.batch_size, precision=precision))
    if "real" in dataset.splits:
        real = SplitTensors(dataset.splits["real"], model.input_size, device)
        transfer = transfer_metrics(
            model, unlearn, real, config.max_sets, args.seed, config.batch_size, precision
        )
        metrics.update({f"real.{key}": value for key, value in transfer.items()})
    metrics.update(model_cost(model, next(test.batches(2))[0], device))
    write_json(args.out, metrics)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items() if ".mean" in k or "full_bank" in k))


if __name__ == "__main__":
    run_stage(main, "evaluate")
