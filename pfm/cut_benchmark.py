"""What a cut buys and what it costs, measured in one run: ``python -m pfm.cut_benchmark``.

A cut is a params overlay (a profile file, e.g. fewer epochs for a recipe chosen on
validation). The benchmark builds two copies of the committed project, ``before`` (params
with ``--profile``) and ``after`` (the same with the cut on top), both held to one
(dataset, seed) unit, and runs ``dvc repro`` of the named stages in each, one after the
other on the same machine. It reads back

- each stage's own cost files (``pfm.stage_clock``: wall and CPU seconds, peak memory)
  and gives the after / before ratio per stage. The copies share one DVC cache, so a
  stage the cut leaves alone is restored in ``after`` from ``before``'s run-cache: its
  cost file holds the same values, and it is marked ``restored`` rather than timed twice;
- the figures both runs produce (the aggregate summary of their metric files, the keys
  the report reads), each put in one of: ``equal`` (the same number), ``within`` (moved,
  but by no more than the half-width of the before run's 95 % interval), ``outside``
  (moved further), or ``no interval`` (moved, one unit: nothing to judge it by). Cost
  keys (seconds, memory) are timings, not figures, and are left out. The scored figures
  (the declared metrics on the accuracy / AUC scale the report's verdicts rest on:
  ``pfm.stats.METRICS``) are counted and listed apart from the counts a recipe changes by
  construction (optimizer steps, samples touched);
- the verdicts: every paired comparison with a reference (``<run>.<metric>.verdict``:
  equivalent, inconclusive, apart) that the cut changes, named. A cut that flips a
  verdict changes a conclusion of the report, whatever its figures' intervals say.

A clone, not the working tree: the measurement is of a commit, named in the output.
"""

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

from pfm.files import write_json
from pfm.profile import merged
from pfm.reporting.aggregate import Summary, collect, summarise
from pfm.reporting.provenance import git_commit
from pfm.reporting.stage_times import StageRun, machine_lines, read_stage_times
from pfm.stage_clock import MEASURES
from pfm.stats import FRACTION, Verdict, metric_of

ARMS = ("before", "after")
# the aggregate stage's metric sources (dvc.yaml): where every figure a report shows lives
METRIC_SOURCES = (
    ("", "metrics/train"),
    ("eval", "metrics/eval"),
    ("", "metrics/unlearn"),
    ("", "metrics/attacks"),
    ("", "metrics/samples"),
)
TIMING = re.compile(r"seconds|memory|rss")  # a summary key that is a cost measure, not a figure
VERDICTS = ("equal", "within", "outside", "no interval")
SHOWN_MOVES = 15  # figures outside their interval listed by name, largest move first


@dataclass(frozen=True)
class StageRatio:
    """One stage's cost in both arms; ``restored``: ``after`` took it from the run-cache."""

    stage: str
    before: Mapping[str, float]
    after: Mapping[str, float]
    restored: bool

    def ratio(self, measure: str) -> float:
        base = self.before[measure]
        return self.after[measure] / base if base else math.nan


@dataclass(frozen=True)
class FigureMove:
    key: str
    before: float
    after: float
    ci95: float
    verdict: str

    @property
    def scored(self) -> bool:
        """A declared metric on the accuracy / AUC scale (``<dataset>.<run>.<name>.mean``)."""
        metric = metric_of(self.key.removesuffix(".mean").split(".", 2)[-1])
        return metric is not None and metric.scale == FRACTION


def arm_params(
    params: Mapping[str, Any],
    profile: Mapping[str, Any],
    cut: Mapping[str, Any],
    dataset: str,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Each arm's params: ``params`` with ``profile``, held to one unit; ``after`` adds
    ``cut``. A cut that changes the unit itself would compare different work."""
    for key in ("datasets", "seeds"):
        if key in cut:
            raise ValueError(f"a cut may not set {key!r}: both arms run the same unit")
    before = merged(merged(params, profile), {"datasets": [dataset], "seeds": [seed]})
    return {"before": before, "after": merged(before, cut)}


def _run(command: Sequence[str], cwd: Path) -> None:
    """``command`` in ``cwd`` with this interpreter's scripts first on the PATH; its output
    goes to ours, so a long repro shows its progress."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(command, cwd=cwd, env=env, check=True)


def make_arm(root: Path, folder: Path, params: Mapping[str, Any], cache: Path) -> None:
    """A clone of ``root``'s committed project at ``folder`` with ``params``, on ``cache``;
    an existing clone is kept (``--resume``: its ``dvc repro`` reruns what is not up to
    date, nothing where the arm finished)."""
    if not (folder / ".git").is_dir():
        _run(["git", "clone", "--quiet", str(root), str(folder)], cwd=root)
    (folder / "params.yaml").write_text(yaml.safe_dump(dict(params), sort_keys=False))
    _run(["dvc", "config", "--local", "cache.dir", str(cache)], cwd=folder)


def targets(stages: Sequence[str], dataset: str, seed: int) -> list[str]:
    """dvc.yaml's matrix item of each stage for the unit (``train@digits-0``); a stage
    named with its item already (``prepare@digits``) stays as it is."""
    return [stage if "@" in stage else f"{stage}@{dataset}-{seed}" for stage in stages]


def stage_costs(folder: Path) -> dict[str, StageRun]:
    """Every stage run's cost in ``folder``, by the stage's name (with the model or dataset
    of a stage run once per one: ``convert.dinov2-small``)."""
    root = folder / "metrics" / "stages"
    if not root.is_dir():
        return {}
    return {
        run.stage if run.seed is not None else f"{run.stage}.{run.name}": run
        for run in read_stage_times(root)
    }


def stage_ratios(first: Mapping[str, StageRun], second: Mapping[str, StageRun]) -> list[StageRatio]:
    """Every stage both arms ran, in the first's order; a run whose every value (cost,
    parts, machine) is the first's was restored, not run again."""
    return [
        StageRatio(name, run.cost, second[name].cost, run == second[name])
        for name, run in first.items()
        if name in second
    ]


def summary_of(folder: Path) -> Summary:
    """The aggregate summary of an arm's metric files (no report, no figures)."""
    sources = [(prefix, folder / path) for prefix, path in METRIC_SOURCES]
    return summarise(collect(sources), {FRACTION: 0.05})  # margin: no key read here


def figure_moves(before: Mapping[str, float], after: Mapping[str, float]) -> list[FigureMove]:
    """Every mean both summaries hold that is a figure (not a timing), judged against the
    before run's interval (module docstring)."""
    moves = []
    for key, old in before.items():
        if not key.endswith(".mean") or TIMING.search(key) or key not in after:
            continue
        new = after[key]
        ci95 = before.get(f"{key.removesuffix('.mean')}.ci95", math.nan)
        if old == new or (math.isnan(old) and math.isnan(new)):
            verdict = "equal"
        elif not math.isfinite(ci95):
            verdict = "no interval"
        else:
            verdict = "within" if abs(new - old) <= ci95 else "outside"
        moves.append(FigureMove(key, old, new, ci95, verdict))
    return moves


def verdict_flips(
    before: Mapping[str, float], after: Mapping[str, float]
) -> dict[str, tuple[str, str]]:
    """``<run>.<metric>`` → its verdict before and after, for each comparison both runs
    hold whose verdict the cut changed."""
    return {
        key.removesuffix(".verdict"): (Verdict(int(old)).word, Verdict(int(after[key])).word)
        for key, old in before.items()
        if key.endswith(".verdict") and key in after and after[key] != old
    }


def compared(summary: Mapping[str, float]) -> int:
    return sum(key.endswith(".verdict") for key in summary)


def flat_result(
    ratios: Sequence[StageRatio],
    moves: Sequence[FigureMove],
    flips: Mapping[str, tuple[str, str]] | None = None,
    comparisons: int = 0,
) -> dict[str, float]:
    """The benchmark's metrics file: flat keys, stable across runs of one cut."""
    out: dict[str, float] = {"verdicts.compared": float(comparisons)}
    out["verdicts.changed"] = float(len(flips or {}))
    for row in ratios:
        for measure in MEASURES:
            name = f"stage.{row.stage}.{measure}"
            out[f"{name}.before"] = row.before[measure]
            out[f"{name}.after"] = row.after[measure]
            out[f"{name}.ratio"] = row.ratio(measure)
        out[f"stage.{row.stage}.restored"] = float(row.restored)
    for verdict in VERDICTS:
        key = verdict.replace(" ", "_")  # flat keys without spaces: no_interval
        out[f"figures.{key}"] = float(sum(m.verdict == verdict for m in moves))
        out[f"scored.{key}"] = float(sum(m.verdict == verdict for m in moves if m.scored))
    return out


def _counts(moves: Sequence[FigureMove]) -> str:
    return ", ".join(f"{v} {sum(m.verdict == v for m in moves)}" for v in VERDICTS)


def _moved_table(moves: Sequence[FigureMove], title: str) -> list[str]:
    """The moves without the before run's interval around them, largest first."""
    moved = sorted(
        (m for m in moves if m.verdict in ("outside", "no interval")),
        key=lambda m: -abs(m.after - m.before),
    )
    if not moved:
        return []
    rows = [[m.key, f"{m.before:.3f}", f"{m.after:.3f}", f"{m.ci95:.3f}", m.verdict] for m in moved]
    heads = ["figure", "before", "after", "± before", ""]
    shown = tabulate(rows[:SHOWN_MOVES], heads, tablefmt="github")
    return [
        f"{title} ({len(rows)} in all, the largest {min(len(rows), SHOWN_MOVES)}):",
        "",
        shown,
        "",
    ]


def report(
    ratios: Sequence[StageRatio],
    moves: Sequence[FigureMove],
    header: Sequence[str],
    flips: Mapping[str, tuple[str, str]] | None = None,
    comparisons: int = 0,
) -> str:
    """Markdown: the per-stage table, the figure counts, the largest moves outside."""
    rows = [
        [
            row.stage,
            *(f"{row.before[m]:.0f} → {row.after[m]:.0f}" for m in MEASURES[:2]),
            f"{row.ratio('wall_seconds'):.2f}",
            f"{row.before['peak_rss_mib']:.0f} → {row.after['peak_rss_mib']:.0f}",
            "restored" if row.restored else "",
        ]
        for row in ratios
    ]
    heads = ["stage", "wall s", "CPU s", "wall after / before", "peak MiB", ""]
    scored = [m for m in moves if m.scored]
    others = [m for m in moves if not m.scored]
    lines = [*header, "", tabulate(rows, heads, tablefmt="github"), ""]
    lines += [
        f"Scored figures (accuracies and AUCs, {len(scored)} means): {_counts(scored)}.",
        f"Other figures (counts, {len(others)} means, timings aside): {_counts(others)}.",
        "",
    ]
    flips = flips or {}
    lines += [f"Verdicts against the reference: {len(flips)} of {comparisons} changed.", ""]
    if flips:
        rows = [[key, old, new] for key, (old, new) in flips.items()]
        lines += [tabulate(rows, ["comparison", "before", "after"], tablefmt="github"), ""]
    lines += _moved_table(scored, "Scored figures without the before run's interval around them")
    lines += _moved_table(others, "Other figures that moved without an interval around them")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        prog="python -m pfm.cut_benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--cut", required=True, type=Path, help="params overlay (YAML)")
    parser.add_argument("--profile", type=Path, help="overlay both arms share (a profile)")
    parser.add_argument("--stages", nargs="+", required=True, help="dvc.yaml matrix stages")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, help="folder for cut.json, cut.md")
    parser.add_argument("--work", type=Path, help="folder for the two clones (default: temp)")
    parser.add_argument(
        "--resume", action="store_true", help="go on with the clones already in --work"
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="the project to clone")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    params = yaml.safe_load((root / "params.yaml").read_text())
    profile = {} if args.profile is None else yaml.safe_load(args.profile.read_text())
    cut = yaml.safe_load(args.cut.read_text())
    if not isinstance(cut, Mapping) or not cut:
        raise ValueError(f"{args.cut} must hold a non-empty mapping of overrides")
    arms = arm_params(params, profile, cut, args.dataset, args.seed)
    work = Path(tempfile.mkdtemp(prefix="pfm-cut-")) if args.work is None else args.work
    if args.work is not None and any(work.glob("*/.git")) and not args.resume:
        raise ValueError(f"{work} holds clones of an earlier run: --resume, or another --work")
    folders = {arm: work / arm for arm in ARMS}
    items = targets(args.stages, args.dataset, args.seed)
    for arm in ARMS:
        make_arm(root, folders[arm], arms[arm], work / "cache")
        print(f"cut benchmark: {arm} arm, dvc repro in {folders[arm]}", flush=True)
        _run(["dvc", "repro", *items], folders[arm])
    costs = {arm: stage_costs(folders[arm]) for arm in ARMS}
    ratios = stage_ratios(costs["before"], costs["after"])
    summaries = {arm: summary_of(folders[arm]) for arm in ARMS}
    moves = figure_moves(summaries["before"], summaries["after"])
    flips = verdict_flips(summaries["before"], summaries["after"])
    comparisons = compared(summaries["before"])
    header = [
        f"# Cut {args.cut.name} on {args.dataset}, seed {args.seed}",
        "",
        f"Commit `{git_commit(folders['before'])}`; both arms "
        f"{'on ' + str(args.profile) if args.profile else 'on params.yaml'}; "
        f"`after` adds `{yaml.safe_dump(cut, default_flow_style=True).strip()}`; "
        f"`dvc repro {' '.join(items)}` in each, "
        "before then after, on this machine.",
        *machine_lines([run for arm in ARMS for run in costs[arm].values()]),
    ]
    result = flat_result(ratios, moves, flips, comparisons)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "cut.json", result)
    text = report(ratios, moves, header, flips, comparisons)
    (args.out / "cut.md").write_text(text + "\n")
    print(text)
    if args.work is None:
        shutil.rmtree(work)
    return result


if __name__ == "__main__":
    main()
