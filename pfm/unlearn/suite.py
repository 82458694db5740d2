"""The forget-k benchmark of unlearning methods on one dataset: each (method, seed) run
on the draws every method shares, scored on test and on validation (where recipes are
chosen), with its cost, its unlearned models saved beside a manifest of them
(``pfm.unlearn.manifest``); and the same scoring of the never-seen prompt models
(``retrain_prompt``), whose training cost is their unlearning cost. Each run's metrics
file names the run's family and reference (``pfm.unlearn.base.Declaration``).

Runs go side by side in ``workers`` single-thread processes (``pfm.parallel``). Every
output is written where ``place`` says (``pfm.files.Staging.path``: aside, until all
runs succeeded)."""

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pfm.batches import SplitTensors
from pfm.cli import write_run_metrics
from pfm.config import matrix, section
from pfm.cost import CostRecord, model_cost
from pfm.data import PreparedDataset
from pfm.evaluate import forget_k, forget_plan, mode_accuracies
from pfm.files import Place
from pfm.models.checkpoint import load_model, load_model_for
from pfm.models.prompted import PromptedClassifier
from pfm.parallel import run_all
from pfm.train import train_device
from pfm.tune.recipes import recipe_record, recipe_source
from pfm.unlearn.base import METHODS, PROMPT_REFERENCE, PROMPT_REFERENCE_DECLARATION
from pfm.unlearn.manifest import keeping, read_manifest, run_folder, write_manifest
from pfm.unlearn.run import read_params, unlearn_params, unlearner


def base_model(method: str, seed: int, prompt_models: Path, plain_models: Path) -> Path:
    """The model ``method`` starts from: ``seed<s>.pt`` of the prompt or the plain models."""
    folder = prompt_models if METHODS.get(method).base == "prompt" else plain_models
    return folder / f"seed{seed}.pt"


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
        **METHODS.get(method).declaration.fields(),
        "num_classes": dataset.num_classes,
        "no_forget.full_bank.acc": no_forget,
        **recipe_record(recipe, recipe_source(params)),
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

    first_classes = next(iter(by_classes))
    first = load_model(folder / by_classes[first_classes]["model"]).to(device)

    def load(classes: tuple[int, ...]) -> tuple[PromptedClassifier, CostRecord]:
        draw = by_classes[classes]
        # the first is loaded already (its input size and FLOPs): each file is read once
        model = first if classes == first_classes else load_model(folder / draw["model"])
        return model.to(device), reference_cost(draw)

    test, val = (SplitTensors(dataset.splits[s], first.input_size, device) for s in ("test", "val"))
    plan: dict[int, tuple[list[tuple[int, ...]], bool]] = {}
    for classes in by_classes:
        plan.setdefault(len(classes), ([], False))[0].append(classes)
    metrics: dict[str, Any] = {
        **PROMPT_REFERENCE_DECLARATION.fields(),
        "num_classes": dataset.num_classes,
    }
    metrics.update(forget_k(load, test, plan, seed, config.batch_size, val, None, config.precision))
    metrics["cost.flops_per_sample"] = model_cost(first, next(test.batches(2))[0], device)[
        "cost.flops_per_sample"
    ]
    write_run_metrics(out, metrics, f"{dataset.name} {PROMPT_REFERENCE} seed {seed}")


def benchmark(
    params: Mapping[str, Any],
    dataset: PreparedDataset,
    bases: Mapping[tuple[str, int], Path],
    models: Path,
    out: Path,
    prompt_references: Path | None,
    place: Place,
) -> None:
    """Every (method, seed) of ``bases`` (→ the model it starts from): its unlearned
    models under ``models``, its metrics below ``out`` (``run_folder``'s layout); with
    ``prompt_references`` (stage train's folder) also ``retrain_prompt`` of each seed."""
    no_forget = {base: no_forget_accuracy(base, dataset, params) for base in set(bases.values())}
    jobs: list[Callable[[], None]] = [
        partial(
            unlearn_one, params, dataset, method, seed, base, no_forget[base],
            place(run_folder(models, method, seed)),
            place(run_folder(out, method, seed).with_suffix(".json")),
        )
        for (method, seed), base in bases.items()
    ]  # fmt: skip
    if prompt_references is not None:
        for seed in sorted({seed for _, seed in bases}):
            scores = place(run_folder(out, PROMPT_REFERENCE, seed).with_suffix(".json"))
            folder = prompt_references / f"seed{seed}"
            jobs.append(partial(score_references, params, dataset, folder, seed, scores))
    run_all(jobs, matrix(params).workers, train_device(params))
