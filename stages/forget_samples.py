"""Stage forget-samples: PI-Prefix's own setting — forget seeded subsets of the train
split's rows, not classes — for every method of params ``samples.methods`` on one
(dataset, seed), from the plain model stage train fitted; each method's forget-set,
retain-set and test accuracy and cost per set (``pfm.unlearn.sample_suite``), one
metrics file per (method, seed)."""

import argparse
from pathlib import Path

from pfm.cli import run_stage
from pfm.config import load_params, matrix_runs, section
from pfm.data import load_prepared
from pfm.files import staged
from pfm.tune.recipes import applied
from pfm.unlearn import read_params
from pfm.unlearn.sample_params import samples_params
from pfm.unlearn.sample_suite import benchmark_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--plain-models", required=True, type=Path, help="seed<s>.pt: plain")
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics JSON")
    parser.add_argument("--seed", required=True, type=int, help="one of params' seeds")
    parser.add_argument(
        "--recipes", required=True, type=Path, help="models/recipes/<recipes>/<dataset>.yaml"
    )
    args = parser.parse_args()
    params = applied(load_params(), args.recipes)
    matrix_runs(params, args.seed)  # refuses a seed params does not list
    for method in samples_params(section(params, "samples")).methods:  # fail before any runs
        read_params(section(params, "unlearn"), method)
    dataset = load_prepared(args.data)
    with staged(args.out) as stage:  # all or nothing changes
        benchmark_samples(params, dataset, args.seed, args.plain_models, args.out, stage.path)


if __name__ == "__main__":
    run_stage(main, "forget-samples")
