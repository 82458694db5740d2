"""What produced the report's numbers and what they rest on: the profile, backbone,
epochs, datasets, seeds, the recovery attack's budget and commit (from params and git),
and per dataset, stage and k the units each method actually used (read from the
summary's ``draws.`` keys, never from a params cap)."""

import subprocess
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pfm.reporting.aggregate import AggregateParams, datasets_and_methods, draws_of
from pfm.reporting.table import ordered_methods

# stage → how the header names it and the size of its forget sets
STAGES = {
    "unlearn": ("unlearn", "k"),
    "eval": ("evaluate", "k"),
    "mia": ("MIA", "k"),
    "recovery": ("recovery", "k"),
    "samples": ("sample forget sets", "rows"),
}
INTERVALS = (
    "Intervals: 95% Student-t CI over per-seed means (≥ 2 seeds) or over one seed's forget "
    "sets (class variation only); comparisons paired on (seed, forget set); none where n = 1"
)


def git_commit(cwd: Path | None = None) -> str:
    """Short hash of HEAD; ``uncommitted`` in a repository without commits, ``unknown``
    outside one (or without git)."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode == 0:
            return head.stdout.strip()
        return "uncommitted" if git("rev-parse", "--git-dir").returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _units(n: int, seeds: int) -> str:
    """ "5 forget sets × 1 seed (n = 5)"; "7 forget sets over 2 seeds (n = 7)" when the
    seeds used different numbers of sets."""
    if n % seeds:
        return f"{_plural(n, 'forget set')} over {_plural(seeds, 'seed')} (n = {n})"
    return f"{_plural(n // seeds, 'forget set')} × {_plural(seeds, 'seed')} (n = {n})"


def _draw_line(used: Mapping[str, tuple[int, int]]) -> str:
    """Methods → their draws in one clause: the common case once, the exceptions named."""
    counts = Counter(used.values())
    common, shared_by = counts.most_common(1)[0]
    if shared_by < 2:
        return "; ".join(f"{m}: {_units(*d)}" for m, d in used.items())
    others = [f"{m}: {_units(*d)}" for m, d in used.items() if d != common]
    return "; ".join([f"{_units(*common)} per method", *others])


def _stage_order(stage_k: tuple[str, int]) -> tuple[int, str, int]:
    """unlearn, evaluate, MIA, recovery, samples, then any other stage; k ascending."""
    stage, k = stage_k
    order = list(STAGES)
    return (order.index(stage) if stage in order else len(order)), stage, k


def draw_lines(summary: Mapping[str, float]) -> list[str]:
    """Per dataset and stage: the units each method actually used; the ks of a stage
    whose draws read the same share one line."""
    lines = []
    for dataset, methods in datasets_and_methods(summary).items():
        by_stage: dict[tuple[str, int], dict[str, tuple[int, int]]] = {}
        for method in ordered_methods(summary, dataset, methods):
            for (stage, k), used in draws_of(summary, dataset, method).items():
                by_stage.setdefault((stage, k), {})[method] = used
        merged: dict[tuple[str, str], list[int]] = {}  # (stage, clause) → its ks
        for stage, k in sorted(by_stage, key=_stage_order):
            merged.setdefault((stage, _draw_line(by_stage[stage, k])), []).append(k)
        for (stage, clause), ks in merged.items():
            what, size = STAGES.get(stage, (stage, "k"))
            lines.append(f"{dataset}, {what}, {size} = {', '.join(map(str, ks))}: {clause}")
    return lines or ["no units in the metric files: cells show means without n or interval"]


def _knobs(budget: Mapping[str, Mapping[str, Any]], weight: float | None) -> str:
    """ "prompt 40 × 0.1, head 40 × 0.001; prototype weight 0.25" (what is set)."""
    parts = ", ".join(f"{name} {b['steps']} × {b['lr']:g}" for name, b in budget.items())
    weighted = "" if weight is None else f"prototype weight {weight:g}"
    return "; ".join(part for part in (parts, weighted) if part)


def budget_lines(params: Mapping[str, Any]) -> list[str]:
    """The recovery attack's budget as params fix it: the shared one, then each reported
    dataset's own entries (``attacks.recovery.by_dataset``), so that a reader sees which
    budget each dataset's recovery table ran; none without a recovery section."""
    recovery = params.get("attacks", {}).get("recovery")
    if not recovery:
        return []
    shared = _knobs(recovery.get("budget") or {}, recovery.get("prototype_weight"))
    lines = [f"recovery budget (Adam steps × lr), fixed in advance: {shared}"]
    for name, own in (recovery.get("by_dataset") or {}).items():
        if name in params["datasets"] and own:
            knobs = _knobs(own.get("budget") or {}, own.get("prototype_weight"))
            lines.append(f"{name}'s own recovery budget (by_dataset), in place of those: {knobs}")
    return lines


def provenance(
    params: Mapping[str, Any],
    aggregate: AggregateParams,
    commit: str,
    summary: Mapping[str, float],
) -> list[str]:
    """Provenance lines: what produced the numbers (params) and what they rest on (units)."""
    model = params["model"]
    return [
        f"profile: {aggregate.profile}",
        f"backbone: `{model['backbone']}` (audio: `{model.get('audio_backbone', '—')}`, "
        f"text: `{model.get('text_backbone', '—')}`); "
        f"epochs: {params['train']['epochs']}",
        f"datasets: {', '.join(params['datasets'])}; seeds: {params['seeds']}; "
        f"table k = {aggregate.k}",
        *budget_lines(params),
        *draw_lines(summary),
        INTERVALS,
        f"commit: `{commit}` (checked out when the report was built)",
    ]
