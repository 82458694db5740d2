"""Collect every per-run metric file into one flat summary that reviewers diff.

Input convention (DESIGN.md, Metrics files): each matrix stage writes
``<folder>/…/<dataset>/<method>/seed<s>.json`` with flat numeric keys, e.g.
``metrics/eval/digits/pfm/seed0.json``. Files are found by that shape, not by a list,
so a new stage's metrics join the summary by being written under a collected folder.
The files of one (dataset, method, seed) are merged; the same key with two different
values is an error. Nested mappings are flattened with ``.`` (as DVC does); strings and
lists are not metrics and are skipped; ``null`` reads as NaN.

Summary keys (``metrics/summary.json``), all flat and stable:

- ``<dataset>.<method>.<metric>.mean`` and ``.std``. A source key ``x.mean`` whose file
  also has ``x.std`` (a mean and population std over forget sets, "draws") gives
  ``x.mean`` = mean over seeds and ``x.std`` = population std over all seeds × draws
  (law of total variance, exact when every seed has the same number of draws); any
  other numeric key ``x`` (or ``x.mean`` without ``x.std``) gives its mean and
  population std over the seeds that report it.
- ``<dataset>.<method>.seeds``: how many seeds were found.
- with a ``retrain`` run of the same dataset (the gold reference):
  ``<dataset>.<method>.<metric>.gap_to_retrain`` = |mean − retrain's mean| for the
  forgotten and retained accuracies of every k and every MIA variant;
  ``<dataset>.<method>.k<k>.avg_gap_to_retrain``, the mean of those gaps at that k
  (the "Avg. Gap" of SalUn, Fan et al., ICLR 2024); ``<dataset>.<method>.rte``, the
  run-time efficiency as unlearning time relative to retraining (Jia et al., NeurIPS
  2023 report RTE in absolute minutes, which the ``unlearn_seconds`` metric already is).

NaN stays NaN here; ``to_json`` turns it into ``null`` so the file is strict JSON.
"""

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pfm.files import read_json

REFERENCE = "retrain"
SEED_FILE = re.compile(r"^seed(\d+)\.json$")
FORGET_K = re.compile(r"^k(\d+)\.(forget|retain)_acc$")
MIA = re.compile(r"^mia\.([^.]+)$")
RECOVERY = re.compile(r"^recovery\.m(\d+)\.acc$")
RESIDUAL = re.compile(r"^recovery\.m(\d+)\.residual$")  # acc − never-seen reference's
# Unlearning wall time: the baselines' cost record first, the prompt model's forget().
UNLEARN_SECONDS = ("cost.unlearn_seconds", "forget_seconds")

Runs = dict[tuple[str, str], dict[int, dict[str, float]]]  # (dataset, method) → seed → metrics
Summary = dict[str, float]
Curve = tuple[list[float], list[float]]  # (steps, accuracies) of one seed


def rte(seconds: float, retrain_seconds: float) -> float:
    """Run-time efficiency: a method's unlearning seconds over ``retrain``'s (same draw)."""
    if retrain_seconds <= 0:
        raise ValueError(f"retrain seconds must be > 0, got {retrain_seconds}")
    return seconds / retrain_seconds


@dataclass(frozen=True)
class AggregateParams:
    """The ``aggregate`` section of params.yaml."""

    k: int  # forget-k row shown in the tables and the forgotten-vs-retained plot
    profile: str  # one line naming the profile, printed in the report's header


def _flatten(payload: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif value is None:
            flat[name] = math.nan
        elif isinstance(value, bool | int | float):
            flat[name] = float(value)
    return flat


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def source(spec: str) -> tuple[str, Path]:
    """``"folder"`` or ``"prefix=folder"`` (the command-line form of a metrics source)."""
    prefix, _, folder = spec.rpartition("=")
    return prefix, Path(folder)


def collect(folders: Iterable[Path | tuple[str, Path]]) -> Runs:
    """Every ``<dataset>/<method>/seed<s>.json`` below ``folders`` (missing folders are
    skipped: a stage that has not run yet simply has no rows). A folder given as
    ``(prefix, folder)`` has its keys read as ``<prefix>.<key>``: two stages may then
    report the same metric name for different protocols (the ``evaluate`` stage's
    forget-k over many sets, the ``unlearn`` stage's over the baselines' draws)."""
    runs: Runs = {}
    origin: dict[tuple[str, str, int, str], Path] = {}
    for entry in folders:
        prefix, folder = entry if isinstance(entry, tuple) else ("", entry)
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("seed*.json")):
            match = SEED_FILE.match(path.name)
            if match is None:
                continue
            if len(path.relative_to(folder).parts) < 3:
                raise ValueError(f"{path}: metric files go in <dataset>/<method>/seed<s>.json")
            dataset, method, seed = path.parent.parent.name, path.parent.name, int(match[1])
            payload = read_json(path)
            if not isinstance(payload, Mapping):
                raise ValueError(f"{path} must hold a JSON object of metrics")
            record = runs.setdefault((dataset, method), {}).setdefault(seed, {})
            for key, value in _flatten(payload, f"{prefix}." if prefix else "").items():
                where = (dataset, method, seed, key)
                if key in record and not _same(record[key], value):
                    raise ValueError(
                        f"metric {key!r} is {record[key]} in {origin[where]} but {value} in {path}"
                    )
                record[key], origin[where] = value, path
    return runs


def _seed_stats(records: Iterable[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """metric → (mean, std) over seeds, pooling per-seed draw stds (module docstring)."""
    per_metric: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        seen: set[str] = set()
        for key, value in record.items():
            base, within = key, 0.0
            if key.endswith(".mean"):
                base = key.removesuffix(".mean")
                within = record.get(f"{base}.std", 0.0)
            elif key.endswith(".std") and f"{key.removesuffix('.std')}.mean" in record:
                continue  # the draw std of a mean, pooled with it
            if base in seen:
                raise ValueError(f"a run reports both {base!r} and {base + '.mean'!r}")
            seen.add(base)
            per_metric.setdefault(base, []).append((value, within))
    stats = {}
    for base, pairs in per_metric.items():
        means, withins = np.array(pairs).T  # (seeds,) each
        grand = float(np.mean(means))
        variance = float(np.mean(withins**2) + np.mean((means - grand) ** 2))
        stats[base] = (grand, math.sqrt(variance))  # NaN in, NaN out
    return stats


def _first(stats: Mapping[str, tuple[float, float]], names: Iterable[str]) -> float | None:
    return next((stats[name][0] for name in names if name in stats), None)


def _reference_metrics(
    stats: Mapping[str, tuple[float, float]], reference: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Gaps to the retrain reference and the relative unlearning time (module docstring)."""
    derived: dict[str, float] = {}
    gaps = {
        base: abs(mean - reference[base][0])
        for base, (mean, _) in stats.items()
        if (FORGET_K.match(base) or MIA.match(base)) and base in reference
    }
    derived.update({f"{base}.gap_to_retrain": gap for base, gap in gaps.items()})
    mia_gaps = [gap for base, gap in gaps.items() if MIA.match(base)]
    ks = {m[1] for m in map(FORGET_K.match, gaps) if m is not None}
    for k in sorted(ks, key=int):
        pair = [gaps.get(f"k{k}.forget_acc"), gaps.get(f"k{k}.retain_acc")]
        if None not in pair:
            derived[f"k{k}.avg_gap_to_retrain"] = float(np.mean(pair + mia_gaps))
    seconds, reference_seconds = _first(stats, UNLEARN_SECONDS), _first(reference, UNLEARN_SECONDS)
    if seconds is not None and reference_seconds is not None:
        derived["rte"] = rte(seconds, reference_seconds) if reference_seconds else math.nan
    return derived


def summarise(runs: Runs) -> Summary:
    """Flat ``<dataset>.<method>.<metric>…`` summary of ``collect``'s runs."""
    stats = {pair: _seed_stats(seeds.values()) for pair, seeds in runs.items()}
    summary: Summary = {}
    for (dataset, method), by_metric in sorted(stats.items()):
        prefix = f"{dataset}.{method}"
        summary[f"{prefix}.seeds"] = len(runs[dataset, method])
        for base, (mean, std) in sorted(by_metric.items()):
            summary[f"{prefix}.{base}.mean"] = mean
            summary[f"{prefix}.{base}.std"] = std
        reference = stats.get((dataset, REFERENCE))
        if reference is not None:
            derived = _reference_metrics(by_metric, reference)
            summary.update({f"{prefix}.{key}": value for key, value in sorted(derived.items())})
    return summary


def to_json(summary: Summary) -> dict[str, float | None]:
    """NaN → ``null``: DVC and every JSON reader accept it, unlike a bare ``NaN``."""
    return {key: None if math.isnan(value) else value for key, value in summary.items()}


def datasets_and_methods(summary: Mapping[str, float]) -> dict[str, list[str]]:
    """dataset → its methods, from the ``<dataset>.<method>.seeds`` keys."""
    found: dict[str, list[str]] = {}
    for key in summary:
        if key.endswith(".seeds"):
            dataset, method = key.removesuffix(".seeds").split(".", 1)
            found.setdefault(dataset, []).append(method)
    return {dataset: sorted(methods) for dataset, methods in sorted(found.items())}


def lookup(
    summary: Mapping[str, float], dataset: str, method: str, names: Iterable[str]
) -> tuple[float, float | None] | None:
    """(mean, std) of the first metric in ``names`` this run reports; a derived metric
    (no ``.mean``/``.std`` pair) has std ``None``; ``None`` when none is reported."""
    for name in names:
        key = f"{dataset}.{method}.{name}"
        if f"{key}.mean" in summary:
            return summary[f"{key}.mean"], summary.get(f"{key}.std")
        if key in summary:
            return summary[key], None
    return None


def metric_names(summary: Mapping[str, float], dataset: str, pattern: re.Pattern) -> list[str]:
    """Distinct metric names of ``dataset`` matching ``pattern``, in natural order."""
    names = set()
    for key in summary:
        head, _, rest = key.partition(".")
        if head != dataset:
            continue
        name = rest.partition(".")[2].removesuffix(".mean")
        if pattern.match(name):
            names.add(name)
    return sorted(
        names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]
    )


def read_relearn_curves(folder: Path) -> dict[str, dict[str, list[Curve]]]:
    """Relearn curves: dataset → label → one (steps, accuracies) pair per seed.

    The one place that knows the curve files' format (the attack stage writes them):
    ``<folder>/<dataset>/<method>/seed<s>.json`` holding ``{name: [{"step": int,
    "acc": float}, …], …}`` — every top-level list of records is one curve, labelled
    ``<method>`` (or ``<method> <name>`` when a file holds several)."""
    curves: dict[str, dict[str, list[Curve]]] = {}
    if not folder.is_dir():
        return curves
    for path in sorted(folder.glob("*/*/seed*.json")):
        dataset, method = path.parent.parent.name, path.parent.name
        payload = read_json(path)
        if not isinstance(payload, Mapping):
            raise ValueError(f"{path} must hold a JSON object of curves")
        lists = {k: v for k, v in payload.items() if isinstance(v, list)}
        for name, records in sorted(lists.items()):
            try:
                steps = [float(r["step"]) for r in records]
                accs = [float(r["acc"]) for r in records]
            except (KeyError, TypeError) as error:
                raise ValueError(f"{path}: {name!r} must be a list of {{step, acc}}") from error
            label = method if len(lists) == 1 else f"{method} {name}"
            curves.setdefault(dataset, {}).setdefault(label, []).append((steps, accs))
    return curves
