"""Both attacks on one dataset's saved unlearned models, every (method, seed) of a list
and the never-seen prompt models (``retrain_prompt``) as a run of their own:

- membership inference on the forgotten classes, every registered variant pooled over
  the attacked draws, with one ``units`` record per draw (``pfm.attacks.mia``);
- prompt recovery / few-shot relearning on each attacked draw of every k and on its
  never-seen reference, under every capability that fits the model
  (``pfm.attacks.recovery``, ``pfm.attacks.targets``), each (model, capability) attacked
  once.

Every attack and every MIA run goes side by side in ``workers`` single-thread processes
(``pfm.parallel``): the short MIA runs fill the cores the long prompt-model attacks
leave idle. One metrics file per (attack, method, seed), one relearn-curve file per
(method, seed), each written where ``place`` says (``pfm.files.Staging.path``)."""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from pfm.attacks.harness import Outcome
from pfm.attacks.mia import MiaParams
from pfm.attacks.mia import attack as mia_attack
from pfm.attacks.probes import AttackData, ood_inputs
from pfm.attacks.protocol import RecoveryParams
from pfm.attacks.recovery import DrawResult, attack_saved, summarise
from pfm.attacks.targets import (
    RecoveryRun,
    Target,
    distinct_attacks,
    method_folder,
    recovery_runs,
)
from pfm.cli import write_run_metrics
from pfm.data import PreparedDataset
from pfm.draws import select_draws
from pfm.evaluate import pool
from pfm.files import Place, write_json
from pfm.models.checkpoint import load_model
from pfm.parallel import run_all
from pfm.unlearn.manifest import read_manifest, run_folder

Outcomes = dict[tuple[Target, str], dict[int, Outcome]]  # (target, capability) → m → …


@dataclass(frozen=True)
class AttackFolders:
    """Where the attacks read (the saved models) and write (metrics and curves)."""

    models: Path  # the unlearn stage's folder
    prompt_reference: Path  # stage train's never-seen prompt models
    mia: Path  # MIA metrics
    recovery: Path  # recovery metrics
    curves: Path  # relearn curves


def membership(
    dataset: PreparedDataset,
    config: MiaParams,
    device: torch.device,
    folder: Path,
    seed: int,
    out: Path,
) -> None:
    """Every MIA variant on the attacked draws of one (method, seed) folder, to ``out``:
    pooled keys and one unit per draw, ``{"classes", "k", "mia.<variant>"…}``."""
    train, test = dataset.splits["train"], dataset.splits["test"]
    manifest = read_manifest(folder)
    units = []
    for draw in select_draws(manifest, config.k, config.draws):
        model = load_model(folder / draw["model"]).to(device)
        values = mia_attack(model, train, test, tuple(draw["classes"]), config, seed)
        units.append({"classes": list(draw["classes"]), "k": draw["k"], **values})
    per_draw = [{key: v for key, v in unit.items() if key.startswith("mia.")} for unit in units]
    metrics = {"mia_k": config.k, "mia_draws": len(units), **pool(per_draw), "units": units}
    write_run_metrics(out, metrics, f"{dataset.name} {manifest['method']} seed {seed}", ".mean")


def draw_results(
    run: RecoveryRun, outcomes: Outcomes, recovery: RecoveryParams
) -> list[DrawResult]:
    """Each of ``run``'s draws under each capability that fits it, beside its reference."""
    return [
        DrawResult(attacked.classes, cap, outcomes[attacked, cap], outcomes[reference, cap])
        for attacked, reference in run.draws
        for cap in recovery.capabilities_for(run.prompted)
    ]


def attack_all(
    dataset: PreparedDataset,
    runs: list[tuple[str, int]],
    folders: AttackFolders,
    mia: MiaParams,
    recovery: RecoveryParams,
    data_params: Mapping[str, Mapping],
    workers: int,
    device: torch.device,
    place: Place,
) -> None:
    """Both attacks on every (method, seed) of ``runs`` (``retrain_prompt`` among them
    where it is to be attacked); ``data_params`` (params ``data``) builds the recovery
    attack's out-of-distribution probe, ``recovery.ood_datasets``."""
    planned = recovery_runs(
        folders.models, folders.prompt_reference, runs, recovery.k, recovery.draws
    )
    data = AttackData(  # no validation split: the budget is fixed, nothing is chosen
        dataset.splits["train"], dataset.splits["test"],
        ood_inputs(recovery.ood_datasets, data_params, dataset),
    )  # fmt: skip
    attacks_to_run = distinct_attacks(planned, recovery.capabilities_for)
    jobs = [
        partial(attack_saved, t.path, t.classes, t.seed, cap, data, recovery, device)
        for t, cap in attacks_to_run
    ] + [
        partial(
            membership, dataset, mia, device,
            method_folder(folders.models, folders.prompt_reference, method, seed), seed,
            place(run_folder(folders.mia, method, seed).with_suffix(".json")),
        )
        for method, seed in runs
    ]  # fmt: skip
    parts = [f"recovery.{cap}" for _, cap in attacks_to_run] + ["mia"] * len(runs)
    results = run_all(jobs, workers, device, parts)
    outcomes = dict(zip(attacks_to_run, results[: len(attacks_to_run)], strict=True))
    for run in planned:
        if not recovery.capabilities_for(run.prompted):
            continue  # no listed capability fits this run's model family: nothing attacked
        metrics, curves = summarise(draw_results(run, outcomes, recovery))
        curves_out = run_folder(folders.curves, run.method, run.seed).with_suffix(".json")
        write_json(place(curves_out), curves)
        out = run_folder(folders.recovery, run.method, run.seed).with_suffix(".json")
        label = f"{dataset.name} {run.method} seed {run.seed}"
        write_run_metrics(place(out), metrics, label, "residual.mean")
