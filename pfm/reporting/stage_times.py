"""Where a ``dvc repro``'s time and memory went: the stages' own cost files
(``pfm.stage_clock``) as one markdown table.

Layout below the folder (dvc.yaml's ``--times`` paths; each matrix item owns its file,
as DVC outputs may not overlap): ``<stage>/<dataset>/seed<s>.json`` for a (dataset, seed)
item, ``<stage>/<name>.json`` for a stage run once per dataset or model (``prepare``,
``convert``, ``pretrain``). A file holds ``stage.<stage>.<measure>`` for each of
``MEASURES``, and, where the stage charged its runs to parts (``pfm.stage_clock.charge``),
``stage.<stage>.part.<part>.{seconds,runs}``, and the ``machine.*`` strings of what ran it
(none in files written before they were recorded). Torch-free: the report reads it.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from pfm.files import read_json
from pfm.stage_clock import MEASURES, metric_key

LAYOUT = re.compile(r"^[^/]+/(?P<name>[^/]+?)(?:/seed(?P<seed>\d+))?\.json$")
KEY = re.compile(rf"^stage\.(?P<stage>[^.]+)\.(?:{'|'.join(MEASURES)})$")
PART = re.compile(r"^stage\.[^.]+\.part\.(?P<part>.+)\.seconds$")
TOTAL = "total"
MACHINE = "machine."


@dataclass(frozen=True)
class StageRun:
    """One run of a stage: its dataset (or the model it converts), seed (``None``: a stage
    run once for all seeds) and cost, keyed by ``MEASURES``."""

    stage: str
    name: str
    seed: int | None
    cost: Mapping[str, float]
    parts: Mapping[str, tuple[float, int]] = field(default_factory=dict)  # → (seconds, runs)
    machine: Mapping[str, str] = field(default_factory=dict)  # machine.* → what ran it

    @property
    def label(self) -> str:
        """``train digits seed 0``, ``convert dinov2-small``."""
        return f"{self.stage} {self.name}" + ("" if self.seed is None else f" seed {self.seed}")


def read_stage_times(root: Path) -> list[StageRun]:
    """Every cost file below ``root`` (module docstring: Layout); a file elsewhere or
    without one stage's ``MEASURES`` is an error, not a row left out."""
    runs = []
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).as_posix()
        place = LAYOUT.match(rel)
        if place is None:
            raise ValueError(f"{path}: not <stage>/<dataset>/seed<s>.json or <stage>/<name>.json")
        payload = read_json(path)
        stages = {m.group("stage") for m in map(KEY.match, payload) if m is not None}
        if len(stages) != 1:
            raise ValueError(f"{path}: expected stage.<stage>.<measure> keys of one stage")
        stage = stages.pop()
        keys = {measure: metric_key(stage, measure) for measure in MEASURES}
        missing = [key for key in keys.values() if key not in payload]
        if missing:
            raise ValueError(f"{path}: missing {', '.join(missing)}")
        seed = place.group("seed")
        cost = {measure: float(payload[key]) for measure, key in keys.items()}
        place_seed = None if seed is None else int(seed)
        machine = {k: str(v) for k, v in payload.items() if k.startswith(MACHINE)}
        runs.append(
            StageRun(stage, place.group("name"), place_seed, cost, _parts(payload), machine)
        )
    return runs


def _parts(payload: Mapping[str, float]) -> dict[str, tuple[float, int]]:
    """part → (seconds, runs) of a cost file's ``stage.<stage>.part.<part>.*`` keys."""
    parts = {}
    for key, value in payload.items():
        found = PART.match(key)
        if found is not None:
            parts[found.group("part")] = (
                float(value),
                int(payload[f"{key[: -len('seconds')]}runs"]),
            )
    return parts


def total(runs: list[StageRun]) -> dict[str, float]:
    """Several runs' cost: seconds add up (the stages run one after another); memory is
    the largest peak, as runs do not hold memory at the same time."""
    return {
        "wall_seconds": sum(r.cost["wall_seconds"] for r in runs),
        "cpu_seconds": sum(r.cost["cpu_seconds"] for r in runs),
        "peak_rss_mib": max(r.cost["peak_rss_mib"] for r in runs),
    }


def stage_time_lines(runs: list[StageRun]) -> list[str]:
    """Markdown lines: one row per stage run, each stage's runs under a total row, the
    stage that took longest first, and the total of every run last; none without runs."""
    if not runs:
        return []
    by_stage: dict[str, list[StageRun]] = {}
    for run in runs:
        by_stage.setdefault(run.stage, []).append(run)
    order = sorted(by_stage, key=lambda s: (-total(by_stage[s])["wall_seconds"], s))
    rows = []
    for stage in order:
        for run in sorted(by_stage[stage], key=lambda r: (r.name, r.seed or 0)):
            seed = "" if run.seed is None else str(run.seed)
            rows.append([stage, run.name, seed, *_cells(run.cost)])
        rows.append([f"**{stage}**", TOTAL, "", *_cells(total(by_stage[stage]))])
    rows.append([f"**{TOTAL}**", "", "", *_cells(total(runs))])
    headers = ["stage", "dataset / model", "seed", "wall s", "CPU s", "peak RSS MiB"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    return [*table.splitlines(), *part_lines(runs), *machine_lines(runs)]


def machine_lines(runs: list[StageRun]) -> list[str]:
    """Markdown lines: what ran the stages, once where one machine ran them all, else each
    machine with its runs (a unit rebuilt on another machine's CPU kernels can train
    another model: ``pfm.stage_clock``); runs from before machines were recorded counted.
    A torch-free stage (its file names the CPU alone) is not a machine of its own where
    a stage that loaded torch names the same CPU."""
    cpu = f"{MACHINE}cpu"
    torch_cpus = {run.machine.get(cpu) for run in runs if len(run.machine) > 1}
    groups: dict[str, dict[str, None]] = {}
    for run in runs:
        if not run.machine or (len(run.machine) == 1 and run.machine.get(cpu) in torch_cpus):
            continue
        what = "; ".join(f"{k.removeprefix(MACHINE)} {v}" for k, v in sorted(run.machine.items()))
        groups.setdefault(what, {})[run.label] = None  # a label once, in order
    unrecorded = sum(not run.machine for run in runs)
    lines = [""]
    if len(groups) == 1 and not unrecorded:
        lines.append(f"Every stage run on one machine: {next(iter(groups))}.")
    else:
        lines += ["Stage runs by machine:", ""]
        lines += [f"- {what}: {', '.join(labels)}" for what, labels in groups.items()]
        if unrecorded:
            runs_word = "run" if unrecorded == 1 else "runs"
            lines.append(
                f"- not recorded (files written before machines were): {unrecorded} {runs_word}"
            )
    return lines


def part_lines(runs: list[StageRun]) -> list[str]:
    """Markdown lines: where the runs of each stage that charged parts went, summed over
    its (dataset, seed) runs, the largest part first; none if no stage charged any.
    Runs side by side overlap, so a stage's parts add up to about ``workers`` × its wall."""
    sums: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        for part, (seconds, count) in run.parts.items():
            entry = sums.setdefault((run.stage, part), [0.0, 0])
            entry[0] += seconds
            entry[1] += count
    if not sums:
        return []
    stage_sums: dict[str, float] = {}
    for (stage, _), (seconds, _) in sums.items():
        stage_sums[stage] = stage_sums.get(stage, 0.0) + seconds
    order = sorted(sums, key=lambda key: (key[0], -sums[key][0]))
    rows = []
    for stage, part in order:
        seconds, count = sums[stage, part]
        share = seconds / stage_sums[stage]
        rows.append(
            [
                stage,
                part,
                f"{count:.0f}",
                f"{seconds:.0f}",
                f"{seconds / count:.1f}",
                f"{share:.0%}",
            ]
        )
    headers = ["stage", "part", "runs", "run s (sum)", "s / run", "share"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    intro = "Within a stage, by part (each run's own wall seconds, summed over its workers):"
    return ["", intro, "", *table.splitlines()]


def _cells(cost: Mapping[str, float]) -> list[str]:
    return [
        f"{cost['wall_seconds']:.1f}",
        f"{cost['cpu_seconds']:.1f}",
        f"{cost['peak_rss_mib']:.0f}",
    ]
