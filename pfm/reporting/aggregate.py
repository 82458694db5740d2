"""Collect every per-run metric file into one flat summary that reviewers diff.

Input convention (DESIGN.md, Metrics files): each matrix stage writes
``<folder>/…/<dataset>/<method>/seed<s>.json``, e.g. ``metrics/train/digits/pfm/seed0.json``;
a stage whose (dataset, seed) item writes a folder of methods adds that unit's folder,
``<dataset>/seed<s>/<method>/seed<s>.json`` (``metrics/unlearn/digits/seed0/pfm/seed0.json``:
DVC outputs may not overlap). Files are found by that shape, not by a list, so a new
stage's metrics — and any machine's units, whichever exist — join the summary by being
written under a collected folder. A folder given as ``prefix=folder`` has its names
read as ``<prefix>.<name>`` (the ``evaluate`` stage's forget-k, ``eval.``, uses more sets
than the methods' shared draws). A file holds two things:

- flat numeric keys (``cost.flops_per_sample``, ``epochs``, ``k1.forget_acc.mean`` …).
  The files of one (dataset, method, seed) are merged; the same key with two values is an
  error. Nested mappings are flattened with ``.`` (as DVC does); strings and lists are
  not metrics and are skipped; ``null`` reads as NaN.
- ``"units"``: one record per independent unit — one forget set (``classes``) of one
  seed — the evidence behind every interval. A record's numeric fields become unit
  metrics named ``[<prefix>.]k<k>.<field>`` (``k1.forget_acc``, ``k1.val.retain_acc``,
  ``k1.cost.unlearn_seconds``, ``k1.mia.loss_auc``, ``eval.k5.forget_acc``); a
  recovery record (it has ``capability`` and ``m``) gives
  ``recovery.<capability>.k<k>.m<m>.<field>``; a sample forget set's record (it has
  ``digest`` and ``rows``, ``pfm.samples``) gives ``samples.<field>``, its unit named by
  its rows' digest, so that pairs form on the same rows only. A null or NaN field is
  skipped for that metric only. Two records of one unit that give one metric two values
  are an error.

Statistics (``pfm.stats``). Units are nested, forget sets inside seeds: a unit metric's
estimate is the Student-t 95 % interval of its per-seed means over ≥ 2 seeds, and with
one seed the t-interval over its forget sets (class variation only). With one unit there
is no interval: std and half-width are NaN, never a "± 0".

Families and references. Exact unlearning is the reference, and it must be of the same
architecture as the method: the plain classifier's is ``retrain``, the prompt model's
``retrain_prompt`` (a prompt model trained from scratch without the classes). Each
method declares both (``pfm.unlearn.base.Declaration``) and the unlearn stage writes them
into its files as the string fields ``"family"`` and ``"reference"`` (a reference names
itself); a run's other files (train, eval, attacks) take them from it. A run with units
that no file declares is an error: nothing here guesses them from a name.

Summary keys (``metrics/summary.json``), all flat and stable; ``<run>`` is
``<dataset>.<method>``:

- ``<run>.seeds``: how many seeds have a file.
- ``<run>.family.<family>`` and ``<run>.reference.<method>``: 1, the run's declaration
  (``declarations`` reads them back), e.g. ``digits.pfm.reference.retrain_prompt``.
- every flat key ``x`` of the files: ``<run>.x.mean`` and ``.std`` over seeds. A source
  key ``x.mean`` with an ``x.std`` beside it (a mean and population std over draws) gives
  the mean over seeds and the population std over seeds × draws (law of total variance,
  exact when every seed has the same number of draws).
- every unit metric ``u`` (names above): ``<run>.u.mean``, ``.n`` (units), ``.seeds``,
  ``.ci95`` (the half-width) and ``.std`` (the sample std of what the interval is over),
  e.g. ``digits.pfm.k1.forget_acc.ci95``, ``digits.pfm.k1.mia.efficacy.n``,
  ``digits.pfm.recovery.prompt.k1.m5.residual.mean``. Where a flat key of the same name
  exists these replace it.
- ``<run>.draws.<stage>.k<k>.n`` and ``.seeds``: the units a stage actually used at k
  (stage: ``unlearn``, a prefix such as ``eval``, ``mia``, ``recovery``) and how many
  seeds they came from — the report's header reads these, never a params cap.
- against the family's reference, paired by unit (seed, classes), for every metric
  ``pfm.stats.METRICS`` marks compared (forgotten and retained accuracy, every MIA
  variant): ``<run>.<metric>.diff.mean``, ``.diff.lo``, ``.diff.hi`` (the 95 % interval of
  method − reference by the nested rule; NaN without one), ``.diff.seeds``, ``.diff.sets``
  (the shared units, (seed, forget set) pairs in all) and ``<run>.<metric>.verdict``: 1
  equivalent (the interval inside ±``aggregate.margin``), −1 apart (it excludes 0), 0
  inconclusive (``pfm.stats``), e.g. ``digits.scrub.k1.forget_acc.verdict``. A recovery
  residual (``recovery.<capability>.k<k>.m<m>.residual``) is already paired on its draw:
  the same keys estimate it against 0. A reference has none of these keys.
- SalUn's gaps: ``<run>.k<k>.<metric>.gap_to_reference`` = |mean of the method − mean of
  the reference| over the units both report; ``<run>.k<k>.avg_gap_to_reference``, the mean
  of those gaps at k (SalUn's "Avg. Gap", Fan et al., ICLR 2024), and ``<run>.k<k>.gap.n``,
  the fewest shared units behind any of them.
- ``<run>.k<k>.rte``: run-time efficiency, the method's mean unlearning seconds at k over
  its reference's (``retrain_prompt``'s seconds are its training time). Jia et al.
  (NeurIPS 2023) report RTE in minutes, which ``k<k>.cost.unlearn_seconds`` already is.
- ``<run>.samples.no_op``: the no-op flag below (``k<k>.no_op``) on the sample forget
  sets, against the base model's accuracy on the same rows (``samples.base.forget_acc``).
- ``<run>.k<k>.no_op``: 1 when the request left the forgotten classes as they were: their
  accuracy is equivalent to the accuracy they had before forgetting, paired per unit (the
  unit metric ``k<k>.no_forget.forget_acc`` where the producer writes it; else the seed's
  model-wide no-forget ``no_forget.full_bank.acc``), whatever the method changed; or the
  method changed no parameter (``cost.trainable_params``, elements changed, added or
  removed, is 0 in every unit) and the accuracy is not apart from before; else 0.

NaN stays NaN here; ``to_json`` turns it into ``null`` so the file is strict JSON.
"""

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pfm.config import Count, Fraction, Share
from pfm.files import read_json
from pfm.stats import (
    FRACTION,
    Comparison,
    Estimate,
    Unit,
    Verdict,
    compare,
    margin_of,
    metric_of,
    nested_all,
    paired,
    values_of,
)

DECLARED = ("family", "reference")  # a file's string fields naming its run's declaration
DECLARATION = re.compile(r"^([^.]+)\.([^.]+)\.(family|reference)\.([^.]+)$")  # summary keys
SEED_FILE = re.compile(r"^seed(\d+)\.json$")
SEED_FOLDER = re.compile(r"^seed(\d+)$")  # a (dataset, seed) unit's folder of methods
FORGET_K = re.compile(r"^k(\d+)\.(forget|retain)_acc$")
AT_K = re.compile(r"^k(\d+)\.")  # a unit metric of the forget-k request
MIA = re.compile(r"^k(\d+)\.mia\.([^.]+)$")
RECOVERY = re.compile(r"^recovery\.([^.]+)\.k(\d+)\.m(\d+)\.([^.]+)$")
SECONDS = re.compile(r"^k(\d+)\.cost\.unlearn_seconds$")
CHANGED = re.compile(r"^k(\d+)\.cost\.trainable_params$")  # elements changed, added, removed
NO_FORGET = "no_forget.full_bank.acc"  # the model's accuracy before any forgetting
DRAWS = re.compile(r"^([^.]+)\.k(\d+)\.n$")  # draws.<stage>.k<k>.n, below a run
UNIT_FIELDS = ("classes", "k", "capability", "m")  # a record's identity, not its metrics
SAMPLE_FIELDS = ("set", "digest", "rows")  # a sample unit's identity (pfm.samples)

Runs = dict[tuple[str, str], dict[int, dict[str, float]]]  # (dataset, method) → seed → metrics
UnitKey = Unit  # (seed, sorted forget classes): one unit, nested in its seed
Units = dict[tuple[str, str], dict[UnitKey, dict[str, float]]]  # … → unit → metric → value
Draws = dict[tuple[str, str], dict[tuple[str, int], set[UnitKey]]]  # … → (stage, k) → units
Summary = dict[str, float]
Curve = tuple[list[float], list[float]]  # (steps, accuracies) of one seed
Curves = dict[str, dict[str, list[Curve]]]  # dataset → "<method> <name>" → one per seed


@dataclass(frozen=True)
class Declared:
    """A run's family (``prompt`` | ``plain``) and the method it is measured against, as
    its method declares them (module docstring: Families and references)."""

    family: str
    reference: str


@dataclass
class Collected:
    """Everything the metric files hold: flat keys per seed, units, which units each
    stage used, and each run's declaration."""

    runs: Runs = field(default_factory=dict)
    units: Units = field(default_factory=dict)
    draws: Draws = field(default_factory=dict)
    declared: dict[tuple[str, str], Declared] = field(default_factory=dict)


@dataclass(frozen=True)
class AggregateParams:
    """The ``aggregate`` section of params.yaml."""

    k: Count  # forget-k row shown in the tables and the paired-difference plot
    profile: str  # one line naming the profile, printed in the report's header
    margin: Fraction  # equivalence margin on the accuracy / AUC scale (pfm.stats)
    primary_mia: str  # the headline's MIA variant, fixed in advance (results guide)
    specificity_max: Share  # most retained / noise / OOD → recovered a valid attack has

    def margins(self) -> dict[str, float]:
        """scale → equivalence margin (``pfm.stats.Metric.scale``)."""
        return {FRACTION: self.margin}


def rte(seconds: float, reference_seconds: float) -> float:
    """Run-time efficiency: a method's unlearning seconds over its reference's (same k)."""
    if reference_seconds <= 0:
        raise ValueError(f"reference seconds must be > 0, got {reference_seconds}")
    return seconds / reference_seconds


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


def _unit_metrics(
    record: Mapping[str, Any], prefix: str, where: Path
) -> tuple[str, int, tuple[int, ...], dict]:
    """(stage, k, the unit's identity within its seed, metric name → value) of one unit
    record (module docstring for names)."""
    if "digest" in record:
        return _sample_unit_metrics(record, where)
    classes = record.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ValueError(f"{where}: every unit needs a non-empty list 'classes'")
    k = int(record.get("k", len(classes)))
    if k != len(classes):
        raise ValueError(f"{where}: unit of classes {classes} says k = {k}")
    identity = tuple(sorted(int(c) for c in classes))
    values = _measured(record, UNIT_FIELDS)
    if "capability" in record:
        head = f"recovery.{record['capability']}.k{k}.m{int(record['m'])}"
        return "recovery", k, identity, {f"{head}.{key}": v for key, v in values.items()}
    stage = "mia" if any(key.startswith("mia.") for key in values) else prefix or "unlearn"
    head = f"{prefix}.k{k}" if prefix else f"k{k}"
    return stage, k, identity, {f"{head}.{key}": value for key, value in values.items()}


def _sample_unit_metrics(
    record: Mapping[str, Any], where: Path
) -> tuple[str, int, tuple[int, ...], dict]:
    """A sample forget set's unit (``pfm.samples``): stage ``samples``, its size in rows
    as k, its rows' digest as identity, so that a method pairs with its reference only
    on the very same rows."""
    digest, rows = record.get("digest"), record.get("rows")
    if not isinstance(digest, str) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"{where}: a sample unit needs a 'digest' string and a 'rows' count")
    values = _measured(record, SAMPLE_FIELDS)
    return "samples", rows, (int(digest, 16),), {f"samples.{k}": v for k, v in values.items()}


def _measured(record: Mapping[str, Any], identity: tuple[str, ...]) -> dict[str, float]:
    """A record's numeric fields that are not its identity, NaN left out."""
    fields = _flatten({f: v for f, v in record.items() if f not in identity})
    return {key: value for key, value in fields.items() if not math.isnan(value)}


def _add_units(
    collected: Collected, run: tuple[str, str], seed: int, payload: Mapping, prefix: str, path: Path
) -> None:
    """File ``payload``'s unit records under ``run``; a unit's metric given twice with
    different values is an error."""
    records = payload.get("units", [])
    if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
        raise ValueError(f"{path}: 'units' must be a list of records")
    for record in records:
        stage, k, identity, values = _unit_metrics(record, prefix, path)
        unit = (seed, identity)
        collected.draws.setdefault(run, {}).setdefault((stage, k), set()).add(unit)
        known = collected.units.setdefault(run, {}).setdefault(unit, {})
        for name, value in values.items():
            if name in known and not _same(known[name], value):
                raise ValueError(f"{path}: unit {unit} has {name!r} = {known[name]} and {value}")
            known[name] = value


def _add_flat(
    collected: Collected,
    where: tuple[str, str, int],
    payload: Mapping,
    prefix: str,
    path: Path,
    origin: dict[tuple[str, str, int, str], Path],
) -> None:
    """Merge ``payload``'s flat keys into its (dataset, method, seed) record."""
    dataset, method, seed = where
    record = collected.runs.setdefault((dataset, method), {}).setdefault(seed, {})
    for key, value in _flatten(payload, f"{prefix}." if prefix else "").items():
        at = (dataset, method, seed, key)
        if key in record and not _same(record[key], value):
            raise ValueError(
                f"metric {key!r} is {record[key]} in {origin[at]} but {value} in {path}"
            )
        record[key], origin[at] = value, path


def _add_declared(
    collected: Collected,
    run: tuple[str, str],
    payload: Mapping,
    path: Path,
    origin: dict[tuple[str, str], Path],
) -> None:
    """File ``payload``'s declaration under ``run``; a file without one adds nothing (its
    run's unlearn file declares it), two files that disagree are an error."""
    fields = {name: payload[name] for name in DECLARED if name in payload}
    if not fields:
        return
    if set(fields) != set(DECLARED) or not all(isinstance(v, str) and v for v in fields.values()):
        raise ValueError(f"{path}: {' and '.join(DECLARED)} must both be non-empty strings")
    declared = Declared(**fields)
    known = collected.declared.setdefault(run, declared)
    if known != declared:
        raise ValueError(f"{path} declares {declared} but {origin[run]} declares {known}")
    origin.setdefault(run, path)


def run_of(path: Path, folder: Path) -> tuple[str, str, int]:
    """(dataset, method, seed) of a file ``<folder>/…/<dataset>/[seed<s>/]<method>/seed<s>.json``
    (module docstring); a unit folder must name the file's own seed."""
    seed = int(SEED_FILE.match(path.name)[1])
    parts = path.relative_to(folder).parts[:-1]
    unit = SEED_FOLDER.match(parts[-2]) if len(parts) >= 3 else None
    if unit is not None:
        if int(unit[1]) != seed:
            raise ValueError(f"{path}: a seed{seed}.json in the folder of seed {unit[1]}")
        parts = parts[:-2] + parts[-1:]
    if len(parts) < 2:
        raise ValueError(
            f"{path}: metric files go in <dataset>/<method>/seed<s>.json (or, a unit's, "
            "<dataset>/seed<s>/<method>/seed<s>.json)"
        )
    return parts[-2], parts[-1], seed


def _hidden(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies below a hidden folder: a staging folder that a killed stage
    left beside its output (``pfm.files.Staging``) holds half a run, named like a whole
    one; no dataset, unit or method is named with a leading dot."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts[:-1])


def run_files(folder: Path, what: str) -> Iterator[tuple[Path, str, str, int, Mapping]]:
    """Every ``<dataset>/[seed<s>/]<method>/seed<s>.json`` below ``folder`` with its
    dataset, method, seed and JSON object (none where the folder does not exist: a stage
    or a unit that has not run yet simply has no files); ``what`` the file should hold
    names it in the error for a file that is no JSON object."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("seed*.json")):
        if SEED_FILE.match(path.name) is None or _hidden(path, folder):
            continue
        dataset, method, seed = run_of(path, folder)
        payload = read_json(path)
        if not isinstance(payload, Mapping):
            raise ValueError(f"{path} must hold a JSON object of {what}")
        yield path, dataset, method, seed, payload


def collect(folders: Iterable[Path | tuple[str, Path]]) -> Collected:
    """Every ``<dataset>/[seed<s>/]<method>/seed<s>.json`` below ``folders`` (missing folders
    are skipped: a stage or a unit that has not run yet simply has no rows)."""
    collected = Collected()
    origin: dict[tuple[str, str, int, str], Path] = {}
    declared_in: dict[tuple[str, str], Path] = {}
    for entry in folders:
        prefix, folder = entry if isinstance(entry, tuple) else ("", entry)
        for path, dataset, method, seed, payload in run_files(folder, "metrics"):
            _add_flat(collected, (dataset, method, seed), payload, prefix, path, origin)
            _add_units(collected, (dataset, method), seed, payload, prefix, path)
            _add_declared(collected, (dataset, method), payload, path, declared_in)
    return collected


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


def _estimate_keys(name: str, value: Estimate) -> dict[str, float]:
    keys = {f"{name}.mean": value.mean, f"{name}.ci95": value.ci95, f"{name}.std": value.std}
    if value.n is not None:
        keys[f"{name}.n"] = float(value.n)
    if value.seeds is not None:
        keys[f"{name}.seeds"] = float(value.seeds)
    return keys


def _draw_keys(draws: Mapping[tuple[str, int], set[UnitKey]]) -> dict[str, float]:
    keys: dict[str, float] = {}
    for (stage, k), units in draws.items():
        keys[f"draws.{stage}.k{k}.n"] = float(len(units))
        keys[f"draws.{stage}.k{k}.seeds"] = float(len({seed for seed, _ in units}))
    return keys


def paired_gap(
    method: Mapping[UnitKey, Mapping[str, float]],
    reference: Mapping[UnitKey, Mapping[str, float]],
    name: str,
) -> tuple[float, int] | None:
    """(|mean of method − mean of reference|, shared units) over the units both report
    ``name`` for; ``None`` when they share none (different draws are not comparable)."""
    shared = [u for u, values in method.items() if name in values and name in reference.get(u, {})]
    if not shared:
        return None
    ours = np.mean([method[u][name] for u in shared])
    theirs = np.mean([reference[u][name] for u in shared])
    return float(abs(ours - theirs)), len(shared)


def _gap_keys(
    method: Mapping[UnitKey, Mapping[str, float]], reference: Mapping[UnitKey, Mapping[str, float]]
) -> dict[str, float]:
    """Per-metric gaps, their mean per k and its support (module docstring)."""
    names = {n for values in method.values() for n in values if _compared(n) and AT_K.match(n)}
    gaps: dict[str, tuple[float, int]] = {}
    for name in sorted(names):
        gap = paired_gap(method, reference, name)
        if gap is not None:
            gaps[name] = gap
    keys = {f"{name}.gap_to_reference": gap for name, (gap, _) in gaps.items()}
    for k in sorted({AT_K.match(name)[1] for name in gaps}, key=int):
        at_k = {name: g for name, g in gaps.items() if AT_K.match(name)[1] == k}
        if {f"k{k}.forget_acc", f"k{k}.retain_acc"} <= set(at_k):
            keys[f"k{k}.avg_gap_to_reference"] = float(np.mean([g for g, _ in at_k.values()]))
            keys[f"k{k}.gap.n"] = float(min(n for _, n in at_k.values()))
    return keys


def _compared(name: str) -> bool:
    metric = metric_of(name)
    return metric is not None and metric.compared


def _comparison_keys(name: str, comparison: Comparison) -> dict[str, float]:
    difference = comparison.difference
    low, high = difference.bounds
    return {
        f"{name}.diff.mean": difference.mean,
        f"{name}.diff.lo": low,
        f"{name}.diff.hi": high,
        f"{name}.diff.seeds": float(difference.seeds),
        f"{name}.diff.sets": float(difference.n),
        f"{name}.verdict": float(comparison.verdict),
    }


def _paired_keys(
    method: Mapping[UnitKey, Mapping[str, float]],
    reference: Mapping[UnitKey, Mapping[str, float]],
    margins: Mapping[str, float],
) -> dict[str, float]:
    """The paired difference and verdict of every compared metric against the
    reference, and of every residual (already paired) against 0 (module docstring)."""
    keys: dict[str, float] = {}
    for name in sorted({n for values in method.values() for n in values}):
        metric, margin = metric_of(name), margin_of(name, margins)
        if metric is None:
            continue
        if metric.compared:
            comparison = compare(values_of(method, name), values_of(reference, name), margin)
        elif metric.difference:
            comparison = paired(values_of(method, name), margin)
        else:
            continue
        if comparison is not None:
            keys |= _comparison_keys(name, comparison)
    return keys


def _rte_keys(summary: Mapping[str, float], run: str, reference: str) -> dict[str, float]:
    """``k<k>.rte`` for every k both the run and its reference have seconds for."""
    keys = {}
    for name in metric_names_of(summary, run, SECONDS):
        ours, theirs = summary[f"{run}.{name}.mean"], summary.get(f"{reference}.{name}.mean")
        if theirs is not None:
            k = SECONDS.match(name)[1]
            keys[f"k{k}.rte"] = rte(ours, theirs) if theirs > 0 else math.nan
    return keys


def _no_forget(
    units: Mapping[UnitKey, Mapping[str, float]], seeds: Mapping[int, Mapping[str, float]], k: int
) -> dict[UnitKey, float]:
    """Per unit, the forgotten classes' accuracy before forgetting (module docstring:
    no_op): the unit's own where written, else its seed's model-wide accuracy."""
    before = {}
    for unit, metrics in units.items():
        value = metrics.get(f"k{k}.no_forget.forget_acc", seeds.get(unit[0], {}).get(NO_FORGET))
        if value is not None and not math.isnan(value):
            before[unit] = value
    return before


def _no_op_keys(
    estimates: Mapping[str, Estimate],
    units: Mapping[UnitKey, Mapping[str, float]],
    seeds: Mapping[int, Mapping[str, float]],
    margins: Mapping[str, float],
) -> dict[str, float]:
    """``k<k>.no_op`` for every k with a measured count of changed parameters."""
    keys = {}
    for name, changed in estimates.items():
        match = CHANGED.match(name)
        if match is None:
            continue
        k, forgotten = int(match[1]), values_of(units, f"k{match[1]}.forget_acc")
        keys[f"k{k}.no_op"] = _no_op(changed, forgotten, _no_forget(units, seeds, k), margins)
    return keys


def _sample_no_op_keys(
    estimates: Mapping[str, Estimate],
    units: Mapping[UnitKey, Mapping[str, float]],
    margins: Mapping[str, float],
) -> dict[str, float]:
    """``samples.no_op``: ``_no_op`` on the forgotten rows, against the base model's
    accuracy on the same rows (``samples.base.forget_acc``)."""
    changed = estimates.get("samples.cost.trainable_params")
    if changed is None:
        return {}
    forgotten = values_of(units, "samples.forget_acc")
    before = values_of(units, "samples.base.forget_acc")
    return {"samples.no_op": _no_op(changed, forgotten, before, margins)}


def _no_op(
    changed: Estimate,
    forgotten: Mapping[UnitKey, float],
    before: Mapping[UnitKey, float],
    margins: Mapping[str, float],
) -> float:
    """1 when the request left the forgotten data as it was, paired per unit with the
    accuracy before forgetting: equivalent to it (whatever the method changed: prefixes
    that no prediction follows are no forgetting), or not apart from it with no parameter
    changed; else 0."""
    comparison = compare(forgotten, before, margins[FRACTION])
    if comparison is None:
        return float(changed.mean == 0)
    if comparison.verdict == Verdict.EQUIVALENT:
        return 1.0
    return float(changed.mean == 0 and comparison.verdict != Verdict.APART)


def _flat_keys(seeds: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    keys: dict[str, float] = {"seeds": float(len(seeds))}
    for base, (mean, std) in sorted(_seed_stats(seeds.values()).items()):
        keys[f"{base}.mean"], keys[f"{base}.std"] = mean, std
    return keys


def summarise(collected: Collected, margins: Mapping[str, float]) -> Summary:
    """Flat ``<dataset>.<method>.<metric>…`` summary of ``collect``'s files; ``margins``:
    scale → equivalence margin (``AggregateParams.margins``)."""
    summary: Summary = {}
    estimates: dict[tuple[str, str], dict[str, Estimate]] = {}
    for run, seeds in sorted(collected.runs.items()):
        prefix = ".".join(run)
        estimates[run] = nested_all(collected.units.get(run, {}))
        keys = _flat_keys(seeds) | _draw_keys(collected.draws.get(run, {}))
        for name, value in sorted(estimates[run].items()):
            keys.update(_estimate_keys(name, value))
        summary.update({f"{prefix}.{key}": value for key, value in keys.items()})
    for (dataset, method), ours in sorted(estimates.items()):
        units = collected.units.get((dataset, method), {})
        keys = _no_op_keys(ours, units, collected.runs[dataset, method], margins)
        keys |= _sample_no_op_keys(ours, units, margins)
        declared = _declared_for(collected, (dataset, method))
        if declared is not None:
            keys |= {f"family.{declared.family}": 1.0, f"reference.{declared.reference}": 1.0}
            keys |= _reference_keys(collected, summary, (dataset, method), declared, margins)
        summary.update({f"{dataset}.{method}.{key}": value for key, value in sorted(keys.items())})
    return summary


def _declared_for(collected: Collected, run: tuple[str, str]) -> Declared | None:
    """The run's declaration; ``None`` for a run without units (a training run), which
    is compared with nothing; an error for one with units."""
    declared = collected.declared.get(run)
    if declared is None and collected.units.get(run):
        raise ValueError(
            f"no metrics file of {'.'.join(run)} says its family and reference (the string "
            f"fields {' and '.join(DECLARED)} the unlearn stage writes): rerun its unlearn "
            "stage"
        )
    return declared


def _reference_keys(
    collected: Collected,
    summary: Mapping[str, float],
    run: tuple[str, str],
    declared: Declared,
    margins: Mapping[str, float],
) -> dict[str, float]:
    """The paired differences, gaps and RTE of ``run`` against its declared reference."""
    reference = (run[0], declared.reference)
    units, theirs = collected.units.get(run, {}), collected.units.get(reference, {})
    keys: dict[str, float] = {}
    if run != reference:  # a residual needs no reference run: it is paired already
        keys |= _paired_keys(units, theirs, margins)
    if reference in collected.runs:
        keys |= _gap_keys(units, theirs)
        keys |= _rte_keys(summary, ".".join(run), ".".join(reference))
    return keys


def declarations(summary: Mapping[str, float], dataset: str) -> dict[str, Declared]:
    """method → its declaration, for every run of ``dataset`` that has one (read back from
    the summary's ``family.`` and ``reference.`` keys)."""
    found: dict[str, dict[str, str]] = {}
    for key in summary:
        match = DECLARATION.match(key)
        if match is not None and match[1] == dataset:
            found.setdefault(match[2], {})[match[3]] = match[4]
    return {method: Declared(**fields) for method, fields in found.items()}


def to_json(summary: Summary) -> dict[str, float | None]:
    """NaN → ``null``: DVC and every JSON reader accept it, unlike a bare ``NaN``."""
    return {key: None if math.isnan(value) else value for key, value in summary.items()}


def datasets_and_methods(summary: Mapping[str, float]) -> dict[str, list[str]]:
    """dataset → its methods, from the ``<dataset>.<method>.seeds`` keys."""
    found: dict[str, list[str]] = {}
    for key in summary:
        if key.endswith(".seeds") and key.count(".") == 2:
            dataset, method = key.removesuffix(".seeds").split(".", 1)
            found.setdefault(dataset, []).append(method)
    return {dataset: sorted(methods) for dataset, methods in sorted(found.items())}


def lookup(
    summary: Mapping[str, float], dataset: str, method: str, names: Iterable[str]
) -> Estimate | None:
    """The estimate of the first metric in ``names`` this run reports: a unit metric
    with its n and interval, a flat ``.mean`` or a derived key without them; ``None``
    when none is reported."""
    for name in names:
        key = f"{dataset}.{method}.{name}"
        if f"{key}.mean" in summary:
            n, seeds = summary.get(f"{key}.n"), summary.get(f"{key}.seeds")
            return Estimate(
                summary[f"{key}.mean"],
                None if n is None else int(n),
                summary.get(f"{key}.ci95", math.nan),
                summary.get(f"{key}.std", math.nan),
                None if seeds is None else int(seeds),
            )
        if key in summary:
            return Estimate(summary[key])
    return None


def comparison_of(
    summary: Mapping[str, float], dataset: str, method: str, name: str
) -> Comparison | None:
    """The paired comparison with the reference the summary holds for a metric (its
    ``.diff.*`` and ``.verdict`` keys); ``None`` where there is none."""
    key = f"{dataset}.{method}.{name}"
    if f"{key}.verdict" not in summary:
        return None
    low, high = summary[f"{key}.diff.lo"], summary[f"{key}.diff.hi"]
    difference = Estimate(
        summary[f"{key}.diff.mean"],
        int(summary[f"{key}.diff.sets"]),
        (high - low) / 2,
        seeds=int(summary[f"{key}.diff.seeds"]),
    )
    return Comparison(difference, Verdict(int(summary[f"{key}.verdict"])))


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def metric_names_of(summary: Mapping[str, float], run: str, pattern: re.Pattern) -> list[str]:
    """Distinct metric names (``.mean`` keys) of ``run`` = ``<dataset>.<method>``
    matching ``pattern``, in natural order."""
    head = f"{run}."
    names = {
        key[len(head) :].removesuffix(".mean")
        for key in summary
        if key.startswith(head) and key.endswith(".mean")
    }
    return sorted((n for n in names if pattern.match(n)), key=_natural)


def metric_names(summary: Mapping[str, float], dataset: str, pattern: re.Pattern) -> list[str]:
    """Distinct metric names of any method of ``dataset`` matching ``pattern``."""
    names = {
        name
        for method in datasets_and_methods(summary).get(dataset, [])
        for name in metric_names_of(summary, f"{dataset}.{method}", pattern)
    }
    return sorted(names, key=_natural)


def draws_of(
    summary: Mapping[str, float], dataset: str, method: str
) -> dict[tuple[str, int], tuple[int, int]]:
    """(stage, k) → (units, seeds) that stage used for this run (the ``draws.`` keys)."""
    head = f"{dataset}.{method}.draws."
    found = {}
    for key, value in summary.items():
        match = DRAWS.match(key.removeprefix(head)) if key.startswith(head) else None
        if match is not None:
            seeds = summary[f"{head}{match[1]}.k{match[2]}.seeds"]
            found[match[1], int(match[2])] = (int(value), int(seeds))
    return found


def _curve(records: Any, where: str) -> Curve:
    try:
        return [float(r["step"]) for r in records], [float(r["acc"]) for r in records]
    except (KeyError, TypeError) as error:
        raise ValueError(f"{where} must be a list of {{step, acc}}") from error


def read_relearn_curves(folder: Path) -> Curves:
    """Relearn curves: dataset → label → one (steps, accuracies) pair per seed.

    The one place that knows the curve files' format (the attack stage writes them):
    ``<folder>/<dataset>/[seed<s>/]<method>/seed<s>.json`` holding ``{name: [{"step": int,
    "acc": float}, …], …}`` — every top-level list of records is one curve, labelled
    ``<method>`` (or ``<method> <name>`` when a file holds several). Names are
    ``<capability> k<k> m<m>`` for the attacked model and ``… reference`` for its
    never-seen reference; ``split_label`` takes a label apart again."""
    curves: Curves = {}
    for path, dataset, method, _, payload in run_files(folder, "curves"):
        lists = {k: v for k, v in payload.items() if isinstance(v, list)}
        for name, records in sorted(lists.items()):
            label = method if len(lists) == 1 else f"{method} {name}"
            curve = _curve(records, f"{path}: {name!r}")
            curves.setdefault(dataset, {}).setdefault(label, []).append(curve)
    return curves


def split_label(label: str) -> tuple[str, str]:
    """(method, curve name) of a ``read_relearn_curves`` label (method names hold no
    space)."""
    method, _, name = label.partition(" ")
    return method, name
