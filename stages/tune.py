"""Stage tune: every method's declared search space searched on one dataset's validation
split, the same trial budget for each (params ``tune``), against its reference on forget
sets the report never scores (``pfm.tune``). Writes the Optuna studies (SQLite, one study
per method, the untunable ones with their reason) and the tuned recipes stage unlearn
reads under ``recipes: tuned``."""

import argparse
from pathlib import Path

from pfm.attacks import MiaParams
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, matrix, one_key, section
from pfm.data import load_prepared
from pfm.files import staged
from pfm.train import train_device
from pfm.tune.objective import Scoring
from pfm.tune.params import TuneParams
from pfm.tune.recipes import write_tuned
from pfm.tune.search import tune_dataset
from pfm.tune.sets import scored_sets, tuning_sets
from pfm.tune.space import plan
from pfm.tune.study import best_trial, summary, write_studies
from pfm.unlearn import read_params, unlearn_params
from pfm.unlearn.suite import base_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--prompt-models", required=True, type=Path, help="seed<s>.pt: pfm's")
    parser.add_argument("--plain-models", required=True, type=Path, help="seed<s>.pt: baselines'")
    parser.add_argument("--study", required=True, type=Path, help="SQLite file of the studies")
    parser.add_argument("--recipes", required=True, type=Path, help="YAML of the tuned recipes")
    args = parser.parse_args()
    params = load_params()
    axes, tune = matrix(params), from_mapping(TuneParams, section(params, "tune"), "tune")
    if tune.seed not in axes.seeds:
        raise ValueError(f"tune.seed: {tune.seed} is not among the trained seeds {axes.seeds}")
    values = section(params, "unlearn")
    plans = [plan(method) for method in axes.methods]
    runs = {name for p in plans if p.tunable for name in (p.method, p.reference)}
    recipes = {method: read_params(values, method)[1] for method in runs}
    config = unlearn_params(values)
    mia = from_mapping(MiaParams, section(section(params, "attacks"), "mia"), "attacks.mia")
    primary = one_key(section(params, "aggregate"), "primary_mia", str, "aggregate", None)
    scoring = Scoring(mia, primary, config.batch_size, config.precision, tune.seed)
    dataset = load_prepared(args.data)
    scored = scored_sets(dataset.num_classes, config, axes.seeds)
    sets = tuning_sets(dataset.num_classes, tune.k, tune.sets, scored, tune.seed)
    bases = {m: base_model(m, tune.seed, args.prompt_models, args.plain_models) for m in runs}
    outcome = tune_dataset(
        dataset, plans, recipes, bases, sets, tune, scoring, train_device(params), axes.workers
    )
    attributes = {"dataset": dataset.name, "sets": [list(s) for s in outcome.sets],
                  "trials": tune.trials, "seed": tune.seed, "primary_mia": primary,
                  "weights": vars(tune.weights)}  # fmt: skip
    with staged() as stage:  # neither file changes unless both are written
        write_studies(stage.path(args.study), outcome.studies, outcome.untunable, attributes)
        tuned = {method: best_trial(trials).params for method, trials in outcome.studies.items()}
        search = {method: summary(trials) for method, trials in outcome.studies.items()}
        write_tuned(stage.path(args.recipes), tuned, search, outcome.untunable)


if __name__ == "__main__":
    run_stage(main, "tune")
