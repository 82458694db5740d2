"""Stage train: on one prepared dataset and seed, with the one training loop, fit
- the pre-forgettable prompt model (params ``train``);
- with ``--plain-*``, the baselines' plain classifier: the same backbone, adapters and
  head without prompts, cross-entropy (params ``train_base``);
- with ``--references``, the prompt family's exact-unlearning reference
  ``retrain_prompt``: never-seen prompt models (same spec, recipe and seed, trained
  without each attacked draw's classes; ``pfm.attacks.reference``), saved with a manifest
  that records each one's training cost; the unlearn stage scores them, the attack stage
  attacks them.

They are independent full training runs, so they train side by side in ``workers``
processes (``pfm.parallel``), the prompt model first and the short plain one last: DVC
runs one stage at a time, and as separate stages they added their whole times to the
pipeline's, while here the plain model trains on the core a finished reference leaves
idle. A param change that reruns the stage resumes every model from its checkpoint, and
one whose recipe did not change rewrites the same files."""

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pfm.attacks import RecoveryParams
from pfm.attacks.reference import PROMPT_REFERENCE, never_seen, reference_draws
from pfm.batches import SplitTensors
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, matrix, section
from pfm.cost import optimizer_steps, peak_memory_bytes
from pfm.data import PreparedDataset, load_prepared
from pfm.data.prepared import ARRAYS_FILE
from pfm.evaluate import sets_per_k
from pfm.files import Staging, file_digest, staged, write_json
from pfm.losses import plain_objective, prompt_objective
from pfm.models.checkpoint import save_model
from pfm.models.prompted import ModelSpec, build_model, trainable_parameters
from pfm.parallel import run_all
from pfm.pretrain import check_disjoint
from pfm.specs import check_modality, model_spec
from pfm.train import TrainConfig, resolve_device, resume_key, train
from pfm.unlearn import unlearn_params
from pfm.unlearn.manifest import draw_entry, draw_file, write_manifest

OUTPUTS = {  # what a trained model leaves behind → its help text
    "model": "trained model file",
    "checkpoint": "resumable state",
    "metrics": "metrics JSON",
    "history": "per-epoch log (JSON)",
}


@dataclass(frozen=True)
class Outputs:
    model: Path
    checkpoint: Path
    metrics: Path
    history: Path


def fit(
    outputs: Outputs,
    spec: ModelSpec,
    config: TrainConfig,
    dataset: PreparedDataset,
    data_digest: str,
    seed: int,
) -> None:
    """The model of ``spec``: trained, saved, with its metrics and per-epoch history.
    Everything written follows from the checkpoint, so a finished run resumed with no
    epoch left (another model's param changed) rewrites the same bytes."""
    model = build_model(spec, seed)
    check_modality(spec.backbone, model.data_type, dataset.data_type)
    device = resolve_device(config.device)
    train_data, val_data = (
        SplitTensors(dataset.splits[s], model.input_size, device) for s in ("train", "val")
    )
    kind = "prompt" if spec.with_prompts else "plain"
    key = resume_key(spec, config, seed, kind, data_digest)
    objective = prompt_objective(config.kl_weight) if spec.with_prompts else plain_objective
    result = train(model, objective, train_data, val_data, config, seed, outputs.checkpoint, key)
    save_model(model, outputs.model)
    last = result.history[-1] if result.history else {}
    write_json(outputs.metrics, {
        "epochs": config.epochs,
        "train_seconds": result.train_seconds,
        "trainable_params": trainable_parameters(model),
        "optimizer_steps": optimizer_steps(len(train_data), config.batch_size, config.epochs),
        "peak_memory_bytes": last.get("peak_memory_bytes", peak_memory_bytes(device)),
        **{f"final.{k}": v for k, v in last.items() if k.startswith("val.")},
    })  # fmt: skip
    write_json(outputs.history, {"epochs": result.history})


def fit_reference(
    args: argparse.Namespace,
    folder: Path,
    spec: ModelSpec,
    config: TrainConfig,
    dataset: PreparedDataset,
    data_digest: str,
    classes: tuple[int, ...],
) -> dict[str, Any]:
    """The never-seen reference without ``classes``, saved in ``folder`` (``--references``
    or where it is staged); its manifest entry, with the training run's cost (its
    unlearning cost as a method)."""
    # "never_seen": the references' name when their checkpoints were first keyed
    key = resume_key(spec, config, args.seed, "never_seen", classes, data_digest)
    checkpoint = args.checkpoint.with_suffix("") / draw_file(classes)
    device = resolve_device(config.device)
    train_split = dataset.splits["train"]
    model, result = never_seen(
        spec, classes, train_split, config, args.seed, device, checkpoint, key
    )
    save_model(model, folder / draw_file(classes))
    print(f"never-seen reference without {list(classes)} → {args.references}", flush=True)
    retained = int((~np.isin(train_split.labels, classes)).sum())
    return {
        **draw_entry(classes),
        "train_seconds": result.train_seconds,
        "optimizer_steps": optimizer_steps(retained, config.batch_size, config.epochs),
        "samples_touched": retained * config.epochs,
        "trainable_params": trainable_parameters(model),
    }


def staged_outputs(outputs: Outputs, stage: Staging) -> Outputs:
    """``outputs`` written aside until every run of the stage has succeeded; the
    checkpoint stays in place, so a failed stage still resumes."""
    return replace(
        outputs,
        model=stage.path(outputs.model),
        metrics=stage.path(outputs.metrics),
        history=stage.path(outputs.history),
    )


def unlearn_caps(params: Mapping[str, Any], num_classes: int) -> dict[int, int | None]:
    """k → the unlearn stage's cap on forget sets: the draws the references must match."""
    unlearn = unlearn_params(section(params, "unlearn"))
    return sets_per_k(unlearn.ks(num_classes), unlearn.max_sets)


def add_outputs(parser: argparse.ArgumentParser, prefix: str, required: bool) -> None:
    for name, help_text in OUTPUTS.items():
        parser.add_argument(f"--{prefix}{name}", type=Path, required=required, help=help_text)


def plain_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Outputs | None:
    """The plain model's outputs: all four ``--plain-*`` paths, or none (no plain model)."""
    given = {name: getattr(args, f"plain_{name}") for name in OUTPUTS}
    if all(path is None for path in given.values()):
        return None
    if any(path is None for path in given.values()):
        missing = " ".join(f"--plain-{name}" for name, path in given.items() if path is None)
        parser.error(f"the plain model needs every --plain-* path; missing: {missing}")
    return Outputs(**given)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--seed", required=True, type=int)
    add_outputs(parser, "", required=True)
    add_outputs(parser, "plain-", required=False)
    parser.add_argument("--references", type=Path, help="folder for the never-seen references")
    args = parser.parse_args()
    plain = plain_outputs(parser, args)
    params = load_params()
    config = from_mapping(TrainConfig, section(params, "train"), "train")
    plain_config = from_mapping(TrainConfig, section(params, "train_base"), "train_base")
    recovery = from_mapping(
        RecoveryParams, section(section(params, "attacks"), "recovery"), "attacks.recovery"
    )
    workers = matrix(params).workers
    dataset = load_prepared(args.data)
    spec = model_spec(section(params, "model"), dataset.num_classes, True, dataset.data_type)
    check_disjoint(spec.backbone, dataset)
    digest = file_digest(args.data / ARRAYS_FILE)  # in every checkpoint key; read once
    with staged() as stage:  # no output changes unless every model trained
        prompt = staged_outputs(
            Outputs(args.model, args.checkpoint, args.metrics, args.history), stage
        )
        jobs: list[Callable[[], Any]] = [
            partial(fit, prompt, spec, config, dataset, digest, args.seed)
        ]
        draws: list[tuple[int, ...]] = []
        if args.references is not None:
            references = stage.path(args.references)
            draws = reference_draws(
                dataset.num_classes, recovery.k, unlearn_caps(params, dataset.num_classes),
                recovery.draws, args.seed,
            )  # fmt: skip
            jobs += [
                partial(fit_reference, args, references, spec, config, dataset, digest, c)
                for c in draws
            ]
        if plain is not None:
            plain_spec = replace(spec, with_prompts=False)
            outputs = staged_outputs(plain, stage)
            jobs.append(partial(fit, outputs, plain_spec, plain_config, dataset, digest, args.seed))
        results = run_all(jobs, workers, resolve_device(config.device))
        if args.references is not None:
            entries = results[1 : 1 + len(draws)]
            write_manifest(
                references, dataset.name, PROMPT_REFERENCE, args.seed, args.model, entries
            )


if __name__ == "__main__":
    run_stage(main)
