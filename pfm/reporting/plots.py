"""The report's figures: matplotlib PNGs, one set per dataset.

Drawn with matplotlib's object API (``Figure``), never pyplot: no global state and no
display needed. Every dataset always gets the same four files, with a "no data" note
where a stage has not run yet, so ``dvc plots diff`` pairs the same images across
commits. The first is the forest plot of paired differences to the reference, the
report's main comparison. A method keeps its colour in every other figure of a dataset;
error bars are the summary's 95 % intervals (``pfm.stats``), absent where n = 1.
References (exact unlearning) are drawn as stars.
"""

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pfm.files import write_atomic
from pfm.reporting.aggregate import (
    FORGET_K,
    SECONDS,
    AggregateParams,
    Curve,
    datasets_and_methods,
    lookup,
    metric_names,
    split_label,
)
from pfm.reporting.table import is_reference, ordered_methods
from pfm.reporting.verdicts import comparisons
from pfm.stats import Estimate, Verdict

FIGURES = {
    "paired differences to the reference": "paired_differences.png",
    "accuracy vs k": "accuracy_vs_k.png",
    "relearn curves": "relearn.png",
    "unlearning time": "unlearn_time.png",
}
EVAL_K = re.compile(r"^eval\.k(\d+)\.(forget|retain)_acc$")  # the evaluate stage's draws
REFERENCE_CURVE = " reference"  # suffix of a never-seen reference's curve name
GRID_COLUMNS = 4
VERDICT_COLOURS = {Verdict.EQUIVALENT: "tab:green", Verdict.APART: "tab:red",
                   Verdict.INCONCLUSIVE: "tab:gray"}  # fmt: skip


def _colours(names: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """A distinct colour per name for up to 20 (tab20's dark shades first, then its
    light ones; the default cycle repeats after 10, and the suite has 14 methods)."""
    tab20 = matplotlib.colormaps["tab20"].colors
    palette = tab20[0::2] + tab20[1::2]
    return {name: tuple(palette[i % len(palette)]) for i, name in enumerate(names)}


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _half(value: Estimate) -> float:
    """The error bar: the 95 % half-width, 0 (no bar) without an interval."""
    return value.ci95 if value.has_interval else 0.0


def _forest_axes(
    ax: Axes, summary: Mapping[str, float], dataset: str, methods: Sequence[str], name: str
) -> None:
    """One panel: a row per compared method, its paired difference and 95 % interval,
    coloured by verdict, with its units beside it."""
    for row, method in enumerate(methods):
        found = comparisons(summary, dataset, [method], name).get(method)
        if found is None or math.isnan(found.difference.mean):
            continue
        difference, colour = found.difference, VERDICT_COLOURS[found.verdict]
        ax.errorbar(
            difference.mean, row, xerr=_half(difference), fmt="o", capsize=3, color=colour,
            markerfacecolor=colour if difference.has_interval else "white",
        )  # fmt: skip
        ax.annotate(
            f"{found.verdict.word}, {difference.support}", (difference.mean, row),
            textcoords="offset points", xytext=(0, 7), ha="center", fontsize="x-small",
        )  # fmt: skip


def paired_differences(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int, margin: float
) -> Figure:
    """The forest plot: per method, method − reference on forgotten and on retained
    accuracy, paired on the units both have; the band is ±margin (inside: equivalent
    when the whole interval is), the line 0. Hollow: no interval (one unit)."""
    names = (f"k{k}.forget_acc", f"k{k}.retain_acc")
    shown = [m for m in methods if any(comparisons(summary, dataset, [m], n) for n in names)]
    figure = Figure(figsize=(10, 1.2 + 0.45 * max(len(shown), 1)), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    for ax, name, title in zip(axes, names, ("forgotten", "retained"), strict=True):
        if not shown:
            _no_data(ax, f"paired differences at k={k}")
            continue
        ax.axvspan(-margin, margin, color="tab:green", alpha=0.12, label=f"±{margin:.3g}")
        ax.axvline(0, color="black", linewidth=0.8)
        _forest_axes(ax, summary, dataset, shown, name)
        ax.set_xlabel(f"{title} acc (k={k}): method − reference")
        ax.grid(axis="x", alpha=0.3)
    if shown:
        axes[0].set_yticks(range(len(shown)), shown)
        axes[0].set_ylim(len(shown) - 0.5, -0.8)  # first method on top, room for its label
        axes[0].legend(loc="best", fontsize="x-small")
    figure.suptitle(
        f"{dataset}: paired difference to the reference (95% CI; green: equivalent, "
        "red: apart, grey: inconclusive)"
    )
    return figure


def _series(
    summary: Mapping[str, float], dataset: str, method: str, names: Sequence[tuple[int, str]]
) -> list[tuple[int, Estimate]]:
    """(k, estimate) of every (k, metric name) this method reports."""
    points = [(k, lookup(summary, dataset, method, [name])) for k, name in names]
    return [(k, v) for k, v in points if v is not None and not math.isnan(v.mean)]


def accuracy_vs_k(summary: Mapping[str, float], dataset: str, methods: Sequence[str]) -> Figure:
    """Forgotten- and retained-class accuracy as more classes are forgotten at once: the
    unlearn stage's shared draws per method (solid) and the evaluate stage's larger set
    of draws for the prompt model (dashed)."""
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    colours = _colours(methods)
    ks = sorted({int(FORGET_K.match(n)[1]) for n in metric_names(summary, dataset, FORGET_K)})
    eval_ks = {int(EVAL_K.match(n)[1]) for n in metric_names(summary, dataset, EVAL_K)}
    for ax, which in zip(axes, ("forget", "retain"), strict=True):
        drawn = False
        for method in methods:
            for prefix, style in (("", "-"), ("eval.", "--")):
                names = [(k, f"{prefix}k{k}.{which}_acc") for k in sorted(set(ks) | eval_ks)]
                points = _series(summary, dataset, method, names)
                if not points:
                    continue
                label = f"{method} (evaluate)" if prefix else method
                ax.errorbar(
                    [k for k, _ in points],
                    [v.mean for _, v in points],
                    yerr=[_half(v) for _, v in points],
                    marker="*" if is_reference(summary, dataset, method) else "o",
                    linestyle=style,
                    capsize=3,
                    color=colours[method],
                    label=label,
                )
                drawn = True
        name = "forgotten" if which == "forget" else "retained"
        if drawn:
            ax.set_xticks(sorted(set(ks) | eval_ks))
            ax.set_xlabel("k (classes forgotten at once)")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        else:
            _no_data(ax, "forget-k metrics")
        ax.set_title(f"{name}-class accuracy (95% CI)")
    if any(ax.get_legend_handles_labels()[0] for ax in axes):
        axes[1].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    axes[0].set_ylabel("accuracy")
    figure.suptitle(f"{dataset}: accuracy vs k")
    return figure


def _mean_curve(seeds: Sequence[Curve]) -> list[Curve]:
    """The mean over seeds when they share their steps, else every seed's curve."""
    if all(steps == seeds[0][0] for steps, _ in seeds):
        return [(seeds[0][0], list(np.mean([acc for _, acc in seeds], axis=0)))]
    return list(seeds)


def _relearn_axes(
    ax: Axes,
    method: str,
    curves: Mapping[str, Sequence[Curve]],
    colours: Mapping[str, tuple[float, ...]],
) -> None:
    """One method: each attacked curve (solid) beside its reference's (dashed)."""
    for name, seeds in sorted(curves.items()):
        attacked = name.removesuffix(REFERENCE_CURVE)
        style = "--" if name.endswith(REFERENCE_CURVE) else "-"
        for steps, accs in _mean_curve(seeds):
            ax.plot(steps, accs, color=colours[attacked], linestyle=style, linewidth=1.2)
    ax.set_title(method, fontsize="small")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


def _by_method(curves: Mapping[str, Sequence[Curve]]) -> dict[str, dict[str, Sequence[Curve]]]:
    """method → curve name → seeds, from the reader's ``<method> <name>`` labels."""
    grouped: dict[str, dict[str, Sequence[Curve]]] = {}
    for label, seeds in curves.items():
        method, name = split_label(label)
        grouped.setdefault(method, {})[name or "curve"] = seeds  # a file's only curve
    return grouped


def relearn_curves(
    labelled: Mapping[str, Sequence[Curve]], dataset: str, methods: Sequence[str]
) -> Figure:
    """Small multiples, one axes per method: forgotten-class accuracy against attack
    steps, the attack on the unlearned model (solid) and on its never-seen reference
    (dashed), one colour per capability, k and m; mean over seeds."""
    curves = _by_method(labelled)
    shown = [m for m in methods if m in curves] + sorted(set(curves) - set(methods))
    if not shown:
        figure = Figure(figsize=(6, 4), layout="constrained")
        ax = figure.add_subplot()
        _no_data(ax, "relearn curves (prompt-recovery attack)")
        ax.set_title(f"{dataset}: relearn curves")
        return figure
    names = sorted({n.removesuffix(REFERENCE_CURVE) for m in shown for n in curves[m]})
    colours = _colours(names)
    columns = min(GRID_COLUMNS, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure = Figure(figsize=(3.2 * columns + 1.8, 2.5 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, sharex=True, sharey=True)).ravel()
    for ax, method in zip(axes, shown, strict=False):
        _relearn_axes(ax, method, curves[method], colours)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    for ax in axes[max(len(shown) - columns, 0) : len(shown)]:  # the lowest of each column
        ax.set_xlabel("attack steps")
        ax.xaxis.set_tick_params(labelbottom=True)
    for ax in axes[::columns]:
        ax.set_ylabel("forgotten acc")
    handles = [Line2D([], [], color=colours[n], label=n) for n in names]
    handles += [
        Line2D([], [], color="black", linestyle="-", label="attacked model"),
        Line2D([], [], color="black", linestyle="--", label="never-seen reference"),
    ]
    figure.legend(handles=handles, loc="outside right upper", fontsize="x-small")
    figure.suptitle(f"{dataset}: relearn curves (solid: attacked, dashed: reference)")
    return figure


def unlearn_time(summary: Mapping[str, float], dataset: str, methods: Sequence[str]) -> Figure:
    """Seconds per unlearning request at each k, log scale: deleting a prompt and
    retraining a model sit orders of magnitude apart."""
    ks = sorted(int(SECONDS.match(n)[1]) for n in metric_names(summary, dataset, SECONDS))
    timed = [
        m for m in methods
        if any(lookup(summary, dataset, m, [f"k{k}.cost.unlearn_seconds"]) for k in ks)
    ]  # fmt: skip
    height = 0.8 + 0.45 * max(len(timed), 1)
    figure = Figure(figsize=(5 * max(len(ks), 1), height), layout="constrained")
    if not ks:
        ax = figure.add_subplot()
        _no_data(ax, "unlearning times")
        ax.set_title(f"{dataset}: unlearning time")
        return figure
    colours = _colours(methods)
    axes = np.atleast_1d(figure.subplots(1, len(ks), sharey=True)).ravel()
    for ax, k in zip(axes, ks, strict=True):
        _time_bars(ax, summary, dataset, timed, k, colours)
    axes[0].set_yticks(range(len(timed)), timed)
    axes[0].invert_yaxis()  # first method on top, as in the table (shared by every k)
    figure.suptitle(f"{dataset}: seconds per unlearning request (95% CI)")
    return figure


def _time_bars(
    ax: Axes,
    summary: Mapping[str, float],
    dataset: str,
    methods: Sequence[str],
    k: int,
    colours: Mapping[str, tuple[float, ...]],
) -> None:
    """One k's horizontal bars, every method on its own row (the same rows at every k)."""
    values = {m: lookup(summary, dataset, m, [f"k{k}.cost.unlearn_seconds"]) for m in methods}
    rows = [(i, m, v) for i, (m, v) in enumerate(values.items()) if v is not None and v.mean > 0]
    for i, method, value in rows:
        ax.barh(i, value.mean, xerr=_half(value), color=colours[method], capsize=2)
        end = value.mean + _half(value)  # the label after the error bar
        ax.text(end, i, f" {value.mean:.3g} s", va="center", fontsize="x-small")
    if rows:
        seconds = [v.mean for _, _, v in rows]
        ax.set_xscale("log")
        ax.set_xlim(min(seconds) / 3, max(seconds) * 30)  # room for the value labels
    ax.set_xlabel(f"seconds at k = {k} (log scale)")
    ax.grid(axis="x", alpha=0.3, which="both")


def save(figure: Figure, path: Path) -> None:
    """PNG without the software-version stamp, so identical data gives identical bytes
    under one matplotlib version."""
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, metadata={
        "Software": None
    }))  # fmt: skip


def draw_all(
    summary: Mapping[str, float],
    curves: Mapping[str, Mapping[str, Sequence[Curve]]],
    config: AggregateParams,
    folder: Path,
) -> dict[str, dict[str, Path]]:
    """Write every dataset's figures under ``folder/<dataset>/``; dataset → title → path."""
    written: dict[str, dict[str, Path]] = {}
    for dataset, methods in datasets_and_methods(summary).items():
        ordered = ordered_methods(summary, dataset, methods)
        figures = {
            "paired differences to the reference": paired_differences(
                summary, dataset, ordered, config.k, config.margin
            ),
            "accuracy vs k": accuracy_vs_k(summary, dataset, ordered),
            "relearn curves": relearn_curves(curves.get(dataset, {}), dataset, ordered),
            "unlearning time": unlearn_time(summary, dataset, ordered),
        }
        written[dataset] = {}
        for title, figure in figures.items():
            path = folder / dataset / FIGURES[title]
            save(figure, path)
            written[dataset][title] = path
    return written
