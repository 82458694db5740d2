"""Stage train: on one prepared dataset and seed, fit (``pfm.fit``)
- the pre-forgettable prompt model (params ``train``);
- with ``--plain-*``, the baselines' plain classifier: the same model without prompts,
  cross-entropy (params ``train_base``);
- with ``--references``, the prompt family's never-seen references ``retrain_prompt``
  (``pfm.references``), one per attacked draw (``pfm.draws``), with a manifest of their costs.

They are independent full training runs, trained side by side in ``workers`` processes
(``pfm.parallel``), the prompt model first and the short plain one last. A rerun resumes
every model from its checkpoint; one whose recipe did not change rewrites the same files."""

import argparse
from dataclasses import replace
from functools import partial
from pathlib import Path

from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, matrix, section
from pfm.data import load_prepared
from pfm.data.prepared import ARRAYS_FILE
from pfm.draws import attacked_draws
from pfm.files import file_digest, staged
from pfm.fit import Outputs, fit, staged_outputs
from pfm.parallel import run_all
from pfm.pretrain import check_disjoint
from pfm.references import fit_reference
from pfm.specs import model_spec
from pfm.train import TrainConfig, resolve_device
from pfm.unlearn.base import PROMPT_REFERENCE
from pfm.unlearn.manifest import write_manifest

OUTPUTS = ("model", "checkpoint", "metrics", "history")  # the files of one trained model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--seed", required=True, type=int)
    for prefix, required in (("", True), ("plain-", False)):
        for name in OUTPUTS:
            parser.add_argument(f"--{prefix}{name}", type=Path, required=required)
    parser.add_argument("--references", type=Path, help="folder for the never-seen references")
    args = parser.parse_args()
    plain = {name: getattr(args, f"plain_{name}") for name in OUTPUTS}
    missing = [f"--plain-{name}" for name, path in plain.items() if path is None]
    if 0 < len(missing) < len(OUTPUTS):
        parser.error(f"the plain model needs every --plain-* path; missing: {' '.join(missing)}")
    params = load_params()
    config = from_mapping(TrainConfig, section(params, "train"), "train")
    plain_config = from_mapping(TrainConfig, section(params, "train_base"), "train_base")
    dataset = load_prepared(args.data)
    spec = model_spec(
        section(params, "model"),
        dataset.num_classes,
        True,
        dataset.data_type,
        dataset.answer_tokens,
    )
    check_disjoint(spec.backbone, dataset)
    digest = file_digest(args.data / ARRAYS_FILE)  # in every checkpoint key; read once
    with staged() as stage:  # no output changes unless every model trained
        prompt = staged_outputs(Outputs(*(getattr(args, name) for name in OUTPUTS)), stage)
        jobs = [partial(fit, prompt, spec, config, dataset, digest, args.seed)]
        draws: list[tuple[int, ...]] = []
        if args.references is not None:
            references = stage.path(args.references)
            draws = attacked_draws(params, dataset.num_classes, args.seed)
            jobs += [
                partial(fit_reference, references, args.checkpoint.with_suffix(""), spec, config,
                        dataset, digest, classes, args.seed, args.references)
                for classes in draws
            ]  # fmt: skip
        if not missing:
            outputs = staged_outputs(Outputs(**plain), stage)
            plain_spec = replace(spec, with_prompts=False)
            jobs.append(partial(fit, outputs, plain_spec, plain_config, dataset, digest, args.seed))
        results = run_all(jobs, matrix(params).workers, resolve_device(config.device))
        if args.references is not None:
            entries = results[1 : 1 + len(draws)]
            write_manifest(
                references, dataset.name, PROMPT_REFERENCE, args.seed, args.model, entries
            )


if __name__ == "__main__":
    run_stage(main, "train")
