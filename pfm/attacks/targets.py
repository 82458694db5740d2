"""Which saved models the recovery attack runs on, each once per capability.

A run (method, seed) attacks its draws of every k in ``attacks.recovery.k``, and each
draw is measured against the same attack — same capability, budget, shots, noise and
seed — on a never-seen reference that forgot the same classes:

- a prompt model (any method whose saved model has prompts: ``pfm``, ``pfm_defended``…,
  read from the checkpoint, not from a list) against ``retrain_prompt``: the prompt
  models stage train fits from scratch without the classes (``pfm.references``),
  saved with a manifest below ``--prompt-reference`` as ``seed<s>/``;
- a plain baseline against ``retrain``'s model of that draw.

``retrain`` and ``retrain_prompt`` are their own references (residual 0 by construction);
``retrain_prompt`` is also a run of its own, for every seed whose reference folder exists
(``with_prompt_references``), so it is attacked and MIA'd like any method. The attacks to
run are the distinct (target, capability) pairs of every run's draws and references —
found here before any attack runs, so that all of them can run side by side
(``pfm.parallel``).
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pfm.attacks.capabilities import CAPABILITIES
from pfm.draws import matching_draw, select_draws
from pfm.models.checkpoint import read_spec
from pfm.unlearn.base import PROMPT_REFERENCE, REFERENCES
from pfm.unlearn.manifest import read_manifest, run_folder

PLAIN_REFERENCE = REFERENCES["plain"]  # the baselines' never-seen model: without the classes
SELF_REFERENCES = (PLAIN_REFERENCE, PROMPT_REFERENCE)  # never saw the class: their own


@dataclass(frozen=True)
class Target:
    """One model to attack: the model file, the classes it forgot, the seed of the shots."""

    path: Path
    classes: tuple[int, ...]
    seed: int
    prompted: bool  # a prompt model: the prompt* capabilities fit it, head* the others


@dataclass(frozen=True)
class RecoveryRun:
    method: str
    seed: int
    prompted: bool
    draws: tuple[tuple[Target, Target], ...]  # each attacked draw (every k) and its reference


def method_folder(models: Path, prompt_references: Path, method: str, seed: int) -> Path:
    """Where the saved models of (method, seed) are: ``retrain_prompt``'s below the
    references folder, every unlearning method's below the unlearn stage's."""
    if method == PROMPT_REFERENCE:
        return prompt_references / f"seed{seed}"
    return run_folder(models, method, seed)


def with_prompt_references(
    runs: Iterable[tuple[str, int]], prompt_references: Path
) -> list[tuple[str, int]]:
    """``runs`` plus (``retrain_prompt``, seed) for each of their seeds whose reference
    folder exists."""
    runs = list(runs)
    seeds = dict.fromkeys(seed for _, seed in runs)
    extra = [
        (PROMPT_REFERENCE, seed)
        for seed in seeds
        if (prompt_references / f"seed{seed}").is_dir() and (PROMPT_REFERENCE, seed) not in runs
    ]
    return runs + extra


def _target(folder: Path, draw: dict, seed: int) -> Target:
    path = (folder / draw["model"]).resolve()
    return Target(path, tuple(draw["classes"]), seed, read_spec(path).with_prompts)


def prompt_reference_manifest(folder: Path) -> dict:
    """The manifest of a seed's never-seen prompt models, checked to be one."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no never-seen prompt models at {folder}: stage train writes them (--references)"
        )
    manifest = read_manifest(folder)
    if manifest["method"] != PROMPT_REFERENCE:
        raise ValueError(
            f"{folder} holds {manifest['method']!r} models, not the never-seen prompt models "
            f"({PROMPT_REFERENCE})"
        )
    return manifest


def reference_of(method: str, attacked: Target, models: Path, prompt_references: Path) -> Target:
    """The never-seen model the attack on ``attacked`` (a draw of ``method``) is measured
    against: itself for a reference method, else the matching draw of ``retrain_prompt``
    (a prompt model) or ``retrain`` (a plain one), checked to be of the same family."""
    if method in SELF_REFERENCES:
        return attacked
    seed = attacked.seed
    if attacked.prompted:
        folder = prompt_references / f"seed{seed}"
        manifest = prompt_reference_manifest(folder)
    else:
        folder = run_folder(models, PLAIN_REFERENCE, seed)
        manifest = read_manifest(folder)
    reference = _target(folder, matching_draw(manifest, attacked.classes), seed)
    if reference.prompted != attacked.prompted:
        raise ValueError(
            f"{method}'s draw {list(attacked.classes)} and its reference {reference.path} are "
            "not of one model family (prompts / none): no capability fits both"
        )
    return reference


def recovery_runs(
    models: Path,
    prompt_references: Path,
    runs: Iterable[tuple[str, int]],
    ks: Sequence[int],
    limit: int | None,
) -> list[RecoveryRun]:
    """Every run's attacked draws (for each k of ``ks``, the first ``limit`` of its
    manifest) with their references; ``models`` holds the unlearn stage's folders,
    ``prompt_references`` the never-seen prompt models as ``seed<s>/``. A missing manifest
    or reference draw is an error here, before any attack has run."""
    planned = []
    for method, seed in runs:
        folder = method_folder(models, prompt_references, method, seed)
        manifest = read_manifest(folder)
        draws = []
        for k in ks:
            for draw in select_draws(manifest, k, limit):
                attacked = _target(folder, draw, seed)
                draws.append((attacked, reference_of(method, attacked, models, prompt_references)))
        planned.append(RecoveryRun(method, seed, draws[0][0].prompted, tuple(draws)))
    return planned


def distinct_attacks(
    runs: Iterable[RecoveryRun], capabilities_for: Callable[[bool], Sequence[str]]
) -> list[tuple[Target, str]]:
    """Every (target, capability) of ``runs`` once — a target gets each capability that
    fits its family — the long ones first: prompt models, then plain ones, and within
    each those that change more than the head before the cached head-only attacks;
    side-by-side workers finish soonest when the long jobs start first."""
    seen = dict.fromkeys(
        (target, capability)
        for run in runs
        for pair in run.draws
        for target in pair
        for capability in capabilities_for(target.prompted)
    )
    return sorted(seen, key=lambda job: (not job[0].prompted, CAPABILITIES.get(job[1]).head_only))
