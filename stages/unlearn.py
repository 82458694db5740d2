"""Stage unlearn: every unlearning method (params ``methods``) and seed on one dataset —
the forget-k protocol on the draws every method shares, scored on test and on
validation (where recipes are chosen), with its cost — saving each unlearned model it
evaluated and a manifest of them, one folder and one metrics file per (method, seed).

With ``--prompt-references``, the prompt family's exact-unlearning reference joins as
method ``retrain_prompt``: the never-seen prompt models stage train fitted without each
attacked draw's classes, scored by the same forget-k path on their own draws, their
training cost as the unlearning cost (``retrain`` is the plain family's).

Every method runs its recipe with the fields of ``--recipes``, the file of the source
params' top-level ``recipes`` names (``pfm.tune.recipes``): stage hand-recipes' copy of
params under ``hand``, the fields stage tune chose under ``tuned``.

One process per (dataset, seed) — dvc.yaml's unit of work, ``--seed``; without it every
seed of params — (each method costs seconds, the interpreter start ~9 s), its (method,
seed) runs spread over ``workers`` single-thread processes (``pfm.parallel``)."""

import argparse
from pathlib import Path

from pfm.cli import run_stage
from pfm.config import load_params, matrix_runs, section
from pfm.data import load_prepared
from pfm.files import staged
from pfm.tune.recipes import applied
from pfm.unlearn import read_params
from pfm.unlearn.suite import base_model, benchmark


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
    parser.add_argument(
        "--recipes", required=True, type=Path, help="models/recipes/<recipes>/<dataset>.yaml"
    )
    args = parser.parse_args()
    params = applied(load_params(), args.recipes)
    runs = matrix_runs(params, args.seed)
    for method, _ in runs:  # a bad recipe fails before any method runs
        read_params(section(params, "unlearn"), method)
    dataset = load_prepared(args.data)
    bases = {run: base_model(*run, args.prompt_models, args.plain_models) for run in runs}
    with staged(args.models, args.out) as stage:  # all or nothing changes
        benchmark(params, dataset, bases, args.models, args.out, args.prompt_references, stage.path)


if __name__ == "__main__":
    run_stage(main, "unlearn")
