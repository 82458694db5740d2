"""Stage forget-samples' work: PI-Prefix's own setting on one (dataset, seed). Every
method of ``samples.methods`` forgets the seed's sample forget sets
(``pfm.forget_sets.draw_sample_sets``) from the plain model stage train fitted, and is
scored on the forgotten rows, the retained rows and the test split with its cost
(``pfm.samples``). ``retrain`` (a fresh model fitted without the rows) is the reference
the authors' tables do not have; its metrics file names it, as each method's does
(``pfm.unlearn.base.Declaration``), so the aggregate pairs every method with it on the
same sets.

Recipes are the unlearn stage's (``unlearn.<method>``, or the tuned ones): one recipe
per method, whatever it forgets. Runs go side by side in ``workers`` single-thread
processes (``pfm.parallel``), each writing where ``place`` says (staged until all
succeeded).
"""

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pfm.batches import SplitTensors
from pfm.cli import write_run_metrics
from pfm.config import matrix, section
from pfm.cost import CostRecord
from pfm.data import PreparedDataset
from pfm.files import Place
from pfm.forget_sets import ForgetSet, draw_sample_sets
from pfm.models.prompted import PromptedClassifier
from pfm.parallel import run_all
from pfm.samples import SampleScorer, forget_samples
from pfm.train import train_device
from pfm.tune.recipes import recipe_record, recipe_source
from pfm.unlearn.base import METHODS
from pfm.unlearn.manifest import run_folder
from pfm.unlearn.run import read_params, unlearn
from pfm.unlearn.sample_params import samples_params
from pfm.unlearn.suite import load_base


def run_method(
    params: Mapping[str, Any],
    dataset: PreparedDataset,
    method: str,
    seed: int,
    base: Path,
    out: Path,
) -> None:
    """One method and seed: every sample forget set forgotten from the model at ``base``,
    scored, written to ``out``."""
    samples = samples_params(section(params, "samples"))
    _, recipe = read_params(section(params, "unlearn"), method)
    model = load_base(base, dataset, params)
    device = next(model.parameters()).device
    train, test = (dataset.splits[s] for s in ("train", "test"))
    scorer = SampleScorer(
        SplitTensors(train, model.input_size, device),
        SplitTensors(test, model.input_size, device),
        seed, samples.batch_size, samples.precision,
    )  # fmt: skip

    def forget(forget_set: ForgetSet) -> tuple[PromptedClassifier, CostRecord]:
        return unlearn(method, model, forget_set, train, recipe, seed, samples.precision)

    sets = draw_sample_sets(len(train.labels), samples.fraction, samples.sets, seed)
    spec = METHODS.get(method)
    metrics: dict[str, Any] = {
        **spec.declaration.fields(),
        "num_classes": dataset.num_classes,
        "samples.fraction": samples.fraction,
        **recipe_record(recipe, recipe_source(params)),
    }
    metrics.update(forget_samples(forget, model, scorer, sets, spec.variants))
    write_run_metrics(out, metrics, f"{dataset.name} {method} seed {seed} (samples)")


def benchmark_samples(
    params: Mapping[str, Any],
    dataset: PreparedDataset,
    seed: int,
    plain_models: Path,
    out: Path,
    place: Place,
) -> None:
    """Every method of ``samples.methods`` on ``seed``: metrics below ``out`` in the
    aggregate's unit layout (``<out>/<method>/seed<s>.json``)."""
    samples = samples_params(section(params, "samples"))
    base = plain_models / f"seed{seed}.pt"
    jobs = [
        partial(
            run_method, params, dataset, method, seed, base,
            place(run_folder(out, method, seed).with_suffix(".json")),
        )
        for method in samples.methods
    ]  # fmt: skip
    run_all(jobs, matrix(params).workers, train_device(params))
