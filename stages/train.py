"""Stage train / train_base: fit the pre-forgettable prompt model (``--kind prompt``,
params ``train``) or the baselines' plain classifier — same backbone, adapters and head,
no prompts, cross-entropy (``--kind plain``, params ``train_base``) — on one prepared
dataset and seed, with the one training loop.

With ``--references`` the prompt model's never-seen references for the recovery attack
train beside it (same spec, recipe and seed, without each attacked draw's classes;
``pfm.attacks.reference``): each costs a full training run, and only side by side in
``workers`` processes (``pfm.parallel``) do they not add their whole time to a
pipeline whose stages DVC runs one at a time."""

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pfm.attacks import RecoveryParams
from pfm.attacks.reference import never_seen, reference_draws
from pfm.batches import SplitTensors
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, section
from pfm.cost import optimizer_steps, peak_memory_bytes
from pfm.data import PreparedDataset, load_prepared
from pfm.data.prepared import ARRAYS_FILE
from pfm.files import file_digest, write_json
from pfm.losses import plain_objective, prompt_objective
from pfm.models.checkpoint import save_model
from pfm.models.prompted import ModelSpec, build_model, trainable_parameters
from pfm.parallel import run_all
from pfm.pretrain import check_disjoint
from pfm.specs import check_modality, model_spec
from pfm.train import TrainConfig, resolve_device, resume_key, train
from pfm.unlearn.manifest import draw_entry, draw_file, write_manifest

KINDS = {"prompt": "train", "plain": "train_base"}  # model kind → its params section
REFERENCE_METHOD = "never_seen"  # the manifest's method name of the references


def fit(
    args: argparse.Namespace,
    spec: ModelSpec,
    config: TrainConfig,
    dataset: PreparedDataset,
    data_digest: str,
) -> None:
    """The model of ``spec``: trained, saved, with its metrics and per-epoch history."""
    model = build_model(spec, args.seed)
    check_modality(spec.backbone, model.data_type, dataset.data_type)
    device = resolve_device(config.device)
    train_data, val_data = (
        SplitTensors(dataset.splits[s], model.input_size, device) for s in ("train", "val")
    )
    key = resume_key(spec, config, args.seed, args.kind, data_digest)
    objective = prompt_objective(config.kl_weight) if spec.with_prompts else plain_objective
    result = train(model, objective, train_data, val_data, config, args.seed, args.checkpoint, key)
    save_model(model, args.model)
    last = result.history[-1] if result.history else {}
    write_json(args.metrics, {
        "epochs": config.epochs,
        "train_seconds": result.train_seconds,
        "trainable_params": trainable_parameters(model),
        "optimizer_steps": optimizer_steps(len(train_data), config.batch_size, config.epochs),
        "peak_memory_bytes": peak_memory_bytes(device),
        **{f"final.{k}": v for k, v in last.items() if k.startswith("val.")},
    })  # fmt: skip
    write_json(args.history, {"epochs": result.history})


def fit_reference(
    args: argparse.Namespace,
    spec: ModelSpec,
    config: TrainConfig,
    dataset: PreparedDataset,
    data_digest: str,
    classes: tuple[int, ...],
) -> None:
    """The never-seen reference without ``classes``, saved under ``--references``."""
    key = resume_key(spec, config, args.seed, REFERENCE_METHOD, classes, data_digest)
    checkpoint = args.checkpoint.with_suffix("") / draw_file(classes)
    device = resolve_device(config.device)
    model = never_seen(
        spec, classes, dataset.splits["train"], config, args.seed, device, checkpoint, key
    )
    save_model(model, args.references / draw_file(classes))
    print(f"never-seen reference without {list(classes)} → {args.references}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=sorted(KINDS), default="prompt")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--model", required=True, type=Path, help="trained model file")
    parser.add_argument("--checkpoint", required=True, type=Path, help="resumable state")
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--history", required=True, type=Path, help="per-epoch log (JSON)")
    parser.add_argument(
        "--references", type=Path, help="prompt kind: folder for the never-seen references"
    )
    args = parser.parse_args()
    if args.references is not None and args.kind != "prompt":
        parser.error("--references belongs to the prompt model (--kind prompt)")
    params = load_params()
    config = from_mapping(TrainConfig, section(params, KINDS[args.kind]), KINDS[args.kind])
    dataset = load_prepared(args.data)
    prompted = args.kind == "prompt"
    spec = model_spec(section(params, "model"), dataset.num_classes, prompted, dataset.data_type)
    check_disjoint(spec.backbone, dataset)
    digest = file_digest(args.data / ARRAYS_FILE)  # in every checkpoint key; read once
    jobs: list[Callable[[], None]] = [partial(fit, args, spec, config, dataset, digest)]
    draws: list[tuple[int, ...]] = []
    if args.references is not None:
        recovery = from_mapping(
            RecoveryParams, section(section(params, "attacks"), "recovery"), "attacks.recovery"
        )
        max_sets = section(params, "unlearn")["max_sets"]
        draws = reference_draws(
            dataset.num_classes, recovery.k, max_sets, recovery.draws, args.seed
        )
        jobs += [partial(fit_reference, args, spec, config, dataset, digest, c) for c in draws]
    run_all(jobs, params["workers"], resolve_device(config.device))
    if args.references is not None:
        entries = [draw_entry(c) for c in draws]
        write_manifest(
            args.references, dataset.name, REFERENCE_METHOD, args.seed, args.model, entries
        )


if __name__ == "__main__":
    run_stage(main)
