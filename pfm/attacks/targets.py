"""Which saved models the recovery attack runs on, each once.

A run (method, seed) attacks its draws of one k, and each draw is measured against the
same attack on a never-seen reference of the same classes: the prompt model's was
trained beside it (stage ``train``), a plain baseline's is ``retrain``'s model of that
draw. The eleven baselines thus share one reference, and ``retrain`` is its own, so the
attacks to run are the distinct targets of every run's draws and references — found
here before any runs, so that all of them can run side by side (``pfm.parallel``).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pfm.attacks.draws import matching_draw, select_draws
from pfm.models.checkpoint import read_spec
from pfm.unlearn.manifest import read_manifest, run_folder

PLAIN_REFERENCE = "retrain"  # the baselines' never-seen model: trained without the classes


@dataclass(frozen=True)
class Target:
    """One attack: the model file, the classes it forgot, the seed of the shots."""

    path: Path
    classes: tuple[int, ...]
    seed: int
    prompted: bool  # a prompt model: its attack trains through the whole backbone


@dataclass(frozen=True)
class RecoveryRun:
    method: str
    seed: int
    prompted: bool
    draws: tuple[tuple[Target, Target], ...]  # each attacked draw and its reference


def _target(folder: Path, draw: dict, seed: int) -> Target:
    path = (folder / draw["model"]).resolve()
    return Target(path, tuple(draw["classes"]), seed, read_spec(path).with_prompts)


def recovery_runs(
    models: Path,
    prompt_references: Path,
    runs: Iterable[tuple[str, int]],
    k: int,
    limit: int | None,
) -> list[RecoveryRun]:
    """Every run's attacked draws (the first ``limit`` of size ``k`` in its manifest
    below ``models``) with their references; ``prompt_references`` holds the never-seen
    prompt models as ``seed<s>/``. A missing manifest or reference draw is an error
    here, before any attack has run."""
    planned = []
    for method, seed in runs:
        folder = run_folder(models, method, seed)
        draws = []
        for draw in select_draws(read_manifest(folder), k, limit):
            attacked = _target(folder, draw, seed)
            if attacked.prompted:
                where = prompt_references / f"seed{seed}"
            elif method == PLAIN_REFERENCE:
                draws.append((attacked, attacked))
                continue
            else:
                where = run_folder(models, PLAIN_REFERENCE, seed)
            reference = _target(where, matching_draw(read_manifest(where), attacked.classes), seed)
            draws.append((attacked, reference))
        planned.append(RecoveryRun(method, seed, draws[0][0].prompted, tuple(draws)))
    return planned


def distinct_targets(runs: Iterable[RecoveryRun]) -> list[Target]:
    """Every target of ``runs`` once, prompt models first: their attacks take longest,
    and side-by-side workers finish soonest when the long jobs start first."""
    seen = dict.fromkeys(t for run in runs for pair in run.draws for t in pair)
    return sorted(seen, key=lambda t: not t.prompted)
