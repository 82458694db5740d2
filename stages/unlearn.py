"""Stage unlearn: every unlearning method (params ``methods``) and seed on one dataset —
the forget-k protocol on the draws every method shares, scored on test and on
validation (where recipes are chosen), with its cost — saving each unlearned model it
evaluated and a manifest of them, one folder and one metrics file per (method, seed).

With ``--prompt-references``, the prompt family's exact-unlearning reference joins as
method ``retrain_prompt``: the never-seen prompt models stage train fitted without each
attacked draw's classes, scored by the same forget-k path on their own draws, their
training cost as the unlearning cost (``retrain`` is the plain family's).

One process per (dataset, seed) — dvc.yaml's unit of work, ``--seed``; without it every
seed of params — (each method costs seconds, the interpreter start ~9 s), its (method,
seed) runs spread over ``workers`` single-thread processes (``pfm.parallel``)."""

import argparse
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch

from pfm.attacks.reference import PROMPT_REFERENCE
from pfm.batches import SplitTensors
from pfm.cli import run_stage, write_run_metrics
from pfm.config import Device, load_params, matrix, matrix_runs, one_key, section
from pfm.cost import CostRecord, model_cost
from pfm.data import PreparedDataset, load_prepared
from pfm.evaluate import forget_k, forget_plan, mode_accuracies
from pfm.files import staged
from pfm.models.checkpoint import load_model, load_model_for
from pfm.models.prompted import PromptedClassifier
from pfm.parallel import run_all
from pfm.train import resolve_device
from pfm.unlearn import METHODS, read_params, unlearn_params, unlearner
from pfm.unlearn.manifest import keeping, read_manifest, run_folder, write_manifest


def train_device(params: Mapping[str, Any]) -> torch.device:
    """The device of ``train.device``: every model here runs where it was trained."""
    return resolve_device(one_key(section(params, "train"), "device", Device, "train", "auto"))


def load_base(
    base: Path, dataset: PreparedDataset, params: Mapping[str, Any]
) -> PromptedClassifier:
    device = train_device(params)
    return load_model_for(base, dataset.name, dataset.num_classes, device)


def no_forget_accuracy(base: Path, dataset: PreparedDataset, params: Mapping[str, Any]) -> float:
    """The base model's test accuracy before any forgetting (eleven baselines share one);
    ``full_bank`` draws nothing at random, so no seed enters."""
    model = load_base(base, dataset, params)
    test = SplitTensors(dataset.splits["test"], model.input_size, next(model.parameters()).device)
    config = unlearn_params(section(params, "unlearn"))
    modes = ["full_bank"]
    return mode_accuracies(model, test, modes, config.batch_size, 0, config.precision)["full_bank"]


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
    test, val = (SplitTensors(dataset.splits[s], model.input_size, device) for s in ("test", "val"))
    metrics: dict[str, Any] = {
        "num_classes": dataset.num_classes,
        "no_forget.full_bank.acc": no_forget,
    }
    draws: list[dict] = []
    method_run = unlearner(method, model, dataset.splits["train"], recipe, seed, config.precision)
    run = keeping(method_run, models, draws)
    plan = forget_plan(dataset.num_classes, config.ks(dataset.num_classes), config.max_sets, seed)
    variants = METHODS.get(method).variants
    metrics.update(
        forget_k(run, test, plan, seed, config.batch_size, val, variants, config.precision)
    )
    write_manifest(models, dataset.name, method, seed, base, draws)
    # deployment FLOPs of an unlearned model: fewer prompts after `pfm`, deep prefixes
    # after PI-Prefix, the base model's own for the rest
    unlearned = load_model(models / draws[0]["model"]).to(device)
    flops = model_cost(unlearned, next(test.batches(2))[0], device)["cost.flops_per_sample"]
    metrics["cost.flops_per_sample"] = flops
    write_run_metrics(out, metrics, f"{dataset.name} {method} seed {seed}")


def reference_cost(draw: Mapping[str, Any]) -> CostRecord:
    """A never-seen model's unlearning cost: its whole training run (stage train records
    it in the manifest), as ``retrain``'s is."""
    return CostRecord(
        unlearn_seconds=draw["train_seconds"],
        optimizer_steps=draw["optimizer_steps"],
        samples_touched=draw["samples_touched"],
        needs_forget_data=False,
        needs_retain_data=True,
        trainable_params=draw["trainable_params"],
    )


def score_references(
    params: Mapping[str, Any], dataset: PreparedDataset, folder: Path, seed: int, out: Path
) -> None:
    """Method ``retrain_prompt``: forget-k metrics of the never-seen prompt models in
    ``folder`` (stage train's, one per attacked draw), to ``out``."""
    config = unlearn_params(section(params, "unlearn"))
    manifest = read_manifest(folder)
    by_classes = {tuple(d["classes"]): d for d in manifest["draws"]}
    device = train_device(params)

    def load(classes: tuple[int, ...]) -> tuple[PromptedClassifier, CostRecord]:
        draw = by_classes[classes]
        return load_model(folder / draw["model"]).to(device), reference_cost(draw)

    first = load(next(iter(by_classes)))[0]
    test, val = (SplitTensors(dataset.splits[s], first.input_size, device) for s in ("test", "val"))
    plan: dict[int, tuple[list[tuple[int, ...]], bool]] = {}
    for classes in by_classes:
        plan.setdefault(len(classes), ([], False))[0].append(classes)
    metrics: dict[str, Any] = {"num_classes": dataset.num_classes}
    metrics.update(forget_k(load, test, plan, seed, config.batch_size, val, None, config.precision))
    metrics["cost.flops_per_sample"] = model_cost(first, next(test.batches(2))[0], device)[
        "cost.flops_per_sample"
    ]
    write_run_metrics(out, metrics, f"{dataset.name} {PROMPT_REFERENCE} seed {seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--prompt-models", required=True, type=Path, help="seed<s>.pt: pfm's")
    parser.add_argument("--plain-models", required=True, type=Path, help="seed<s>.pt: baselines'")
    parser.add_argument("--models", required=True, type=Path, help="folder for unlearned models")
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics JSON")
    parser.add_argument(
        "--prompt-references", type=Path, help="stage train's never-seen prompt models"
    )
    parser.add_argument("--seed", type=int, help="this seed of params' seeds only (default: all)")
    args = parser.parse_args()
    params = load_params()
    runs = matrix_runs(params, args.seed)
    for method, _ in runs:  # a bad recipe fails before any method runs
        read_params(section(params, "unlearn"), method)
    workers, device = matrix(params).workers, train_device(params)
    dataset = load_prepared(args.data)
    bases = {
        (method, seed): (
            args.prompt_models if METHODS.get(method).base == "prompt" else args.plain_models
        )
        / f"seed{seed}.pt"
        for method, seed in runs
    }
    no_forget = {base: no_forget_accuracy(base, dataset, params) for base in set(bases.values())}
    with staged() as stage:  # no output changes unless every method and seed succeeded
        jobs: list[Callable[[], None]] = [
            partial(
                unlearn_one, params, dataset, method, seed, bases[method, seed],
                no_forget[bases[method, seed]], stage.path(run_folder(args.models, method, seed)),
                stage.path(run_folder(args.out, method, seed).with_suffix(".json")),
            )
            for method, seed in runs
        ]  # fmt: skip
        if args.prompt_references is not None:
            for seed in sorted({seed for _, seed in runs}):
                out = stage.path(run_folder(args.out, PROMPT_REFERENCE, seed).with_suffix(".json"))
                folder = args.prompt_references / f"seed{seed}"
                jobs.append(partial(score_references, params, dataset, folder, seed, out))
        run_all(jobs, workers, device)


if __name__ == "__main__":
    run_stage(main)
