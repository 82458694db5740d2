"""Stage unlearn: every unlearning method (params ``methods``) and seed on one dataset —
the forget-k protocol on the draws every method shares, with its cost — saving each
unlearned model it evaluated and a manifest of them, one folder and one metrics file per
(method, seed). One process per dataset (each method costs seconds, the interpreter
start ~9 s), its (method, seed) runs spread over ``workers`` single-thread processes
(``pfm.parallel``)."""

import argparse
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pfm.batches import SplitTensors
from pfm.cli import run_stage, write_run_metrics
from pfm.config import load_params, matrix_runs, section
from pfm.cost import model_cost
from pfm.data import PreparedDataset, load_prepared
from pfm.evaluate import forget_k, k_values, mode_accuracies
from pfm.models.checkpoint import load_model, load_model_for
from pfm.models.prompted import PromptedClassifier
from pfm.parallel import run_all
from pfm.train import resolve_device
from pfm.unlearn import METHODS, read_params, unlearner
from pfm.unlearn.manifest import keeping, run_folder, write_manifest


def load_base(
    base: Path, dataset: PreparedDataset, params: Mapping[str, Any]
) -> PromptedClassifier:
    device = resolve_device(section(params, "train")["device"])
    return load_model_for(base, dataset.name, dataset.num_classes, device)


def no_forget_accuracy(base: Path, dataset: PreparedDataset, params: Mapping[str, Any]) -> float:
    """The base model's test accuracy before any forgetting (eleven baselines share one);
    ``full_bank`` draws nothing at random, so no seed enters."""
    model = load_base(base, dataset, params)
    test = SplitTensors(dataset.splits["test"], model.input_size, next(model.parameters()).device)
    batch_size = section(params, "unlearn")["batch_size"]
    return mode_accuracies(model, test, ["full_bank"], batch_size, 0)["full_bank"]


def unlearn_one(
    params: Mapping[str, Any],
    dataset: PreparedDataset,
    method: str,
    seed: int,
    base: Path,
    no_forget: float,
    models: Path,
    out: Path,
) -> None:
    """One method and seed: its metrics written to ``out``, its unlearned models saved
    under ``models``."""
    config, recipe = read_params(section(params, "unlearn"), method)
    model = load_base(base, dataset, params)
    device = next(model.parameters()).device
    test = SplitTensors(dataset.splits["test"], model.input_size, device)
    ks = list(config.k) if config.k is not None else k_values(dataset.num_classes)
    metrics: dict[str, float] = {
        "num_classes": dataset.num_classes,
        "no_forget.full_bank.acc": no_forget,
    }
    draws: list[dict] = []
    run = keeping(unlearner(method, model, dataset.splits["train"], recipe, seed), models, draws)
    metrics.update(
        forget_k(run, test, dataset.num_classes, ks, config.max_sets, seed, config.batch_size)
    )
    write_manifest(models, dataset.name, method, seed, base, draws)
    # deployment FLOPs of an unlearned model: fewer prompts after `pfm`, deep prefixes
    # after PI-Prefix, the base model's own for the rest
    unlearned = load_model(models / draws[0]["model"]).to(device)
    flops = model_cost(unlearned, next(test.batches(2))[0], device)["cost.flops_per_sample"]
    metrics["cost.flops_per_sample"] = flops
    write_run_metrics(out, metrics, f"{dataset.name} {method} seed {seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--prompt-models", required=True, type=Path, help="seed<s>.pt: pfm's")
    parser.add_argument("--plain-models", required=True, type=Path, help="seed<s>.pt: baselines'")
    parser.add_argument("--models", required=True, type=Path, help="folder for unlearned models")
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics JSON")
    args = parser.parse_args()
    params = load_params()
    runs = matrix_runs(params)
    for method, _ in runs:
        METHODS.get(method)  # a misspelt method fails before any of the others runs
    dataset = load_prepared(args.data)
    bases = {
        (method, seed): (
            args.prompt_models if METHODS.get(method).base == "prompt" else args.plain_models
        )
        / f"seed{seed}.pt"
        for method, seed in runs
    }
    no_forget = {base: no_forget_accuracy(base, dataset, params) for base in set(bases.values())}
    jobs: list[Callable[[], None]] = [
        partial(
            unlearn_one, params, dataset, method, seed, bases[method, seed],
            no_forget[bases[method, seed]], run_folder(args.models, method, seed),
            run_folder(args.out, method, seed).with_suffix(".json"),
        )
        for method, seed in runs
    ]  # fmt: skip
    run_all(jobs, params["workers"], resolve_device(section(params, "train")["device"]))


if __name__ == "__main__":
    run_stage(main)
