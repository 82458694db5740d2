"""The report's figures: matplotlib PNGs, one set per dataset.

Drawn with matplotlib's object API (``Figure``), never pyplot: no global state and no
display needed. Every dataset always gets the same four files, with a "no data" note
where a stage has not run yet, so ``dvc plots diff`` pairs the same images across
commits. A method keeps its colour in every figure of a dataset; error bars are the
summary's std (seeds × forget sets).
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pfm.aggregate import (
    FORGET_K,
    REFERENCE,
    UNLEARN_SECONDS,
    Curve,
    datasets_and_methods,
    lookup,
    metric_names,
)
from pfm.files import write_atomic
from pfm.report import ordered_methods

FIGURES = {
    "forgotten vs retained accuracy": "forget_vs_retain.png",
    "accuracy vs k": "accuracy_vs_k.png",
    "relearn curves": "relearn.png",
    "unlearning time": "unlearn_time.png",
}
LINE_STYLES = ("-", "--", ":", "-.")


def _colours(methods: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """A distinct colour per method for up to 20 (tab20's dark shades first, then its
    light ones; the default cycle repeats after 10, and the suite has 12 methods)."""
    tab20 = matplotlib.colormaps["tab20"].colors
    palette = tab20[0::2] + tab20[1::2]
    return {method: tuple(palette[i % len(palette)]) for i, method in enumerate(methods)}


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _std(value: float | None) -> float:
    return 0.0 if value is None or math.isnan(value) else value


def forget_vs_retain(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int
) -> Figure:
    """One point per method at the table's k: ideal is bottom right (all utility kept,
    the forgotten classes no better than a model that never saw them)."""
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.add_subplot()
    colours = _colours(methods)
    drawn, undefined = 0, []
    for method in methods:
        retain = lookup(summary, dataset, method, [f"k{k}.retain_acc"])
        forget = lookup(summary, dataset, method, [f"k{k}.forget_acc"])
        if retain is None or forget is None:
            continue
        if math.isnan(retain[0]) or math.isnan(forget[0]):
            undefined.append(method)
            continue
        ax.errorbar(
            retain[0],
            forget[0],
            xerr=_std(retain[1]),
            yerr=_std(forget[1]),
            fmt="*" if method == REFERENCE else "o",
            markersize=12 if method == REFERENCE else 7,
            capsize=3,
            color=colours[method],
            label=method,
        )
        ax.annotate(method, (retain[0], forget[0]), textcoords="offset points", xytext=(6, 6))
        drawn += 1
    if not drawn:
        _no_data(ax, f"forget-k metrics at k={k}")
    else:
        ax.set_xlim(0, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"retained-class accuracy (k={k}), higher is better")
        ax.set_ylabel(f"forgotten-class accuracy (k={k}), lower is better")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    if undefined:
        note = f"nan, not drawn: {', '.join(undefined)}"
        ax.text(0.99, 0.99, note, ha="right", va="top", fontsize="small", transform=ax.transAxes)
    ax.set_title(f"{dataset}: forgotten vs retained accuracy")
    return figure


def accuracy_vs_k(summary: Mapping[str, float], dataset: str, methods: Sequence[str]) -> Figure:
    """Forgotten- and retained-class accuracy as more classes are forgotten at once."""
    figure = Figure(figsize=(9, 4), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    colours = _colours(methods)
    ks = sorted({int(FORGET_K.match(n)[1]) for n in metric_names(summary, dataset, FORGET_K)})
    for ax, which in zip(axes, ("forget", "retain"), strict=True):
        drawn = False
        for method in methods:
            points = [(k, lookup(summary, dataset, method, [f"k{k}.{which}_acc"])) for k in ks]
            points = [(k, v) for k, v in points if v is not None]
            if not points:
                continue
            x = [k for k, _ in points]
            ax.errorbar(
                x,
                [v[0] for _, v in points],
                yerr=[_std(v[1]) for _, v in points],
                marker="o",
                capsize=3,
                color=colours[method],
                label=method,
            )
            drawn = True
        name = "forgotten" if which == "forget" else "retained"
        if drawn:
            ax.set_xticks(ks)
            ax.set_xlabel("k (classes forgotten at once)")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        else:
            _no_data(ax, "forget-k metrics")
        ax.set_title(f"{name}-class accuracy")
    axes[0].set_ylabel("accuracy")
    figure.suptitle(f"{dataset}: accuracy vs k")
    return figure


def relearn_curves(
    curves: Mapping[str, Sequence[Curve]], dataset: str, methods: Sequence[str]
) -> Figure:
    """Accuracy on the forgotten class(es) vs attack steps; a line per label (colour: its
    method, line style: the curve's name within the method), mean over seeds with a
    ± std band when the seeds share their steps (else one line a seed)."""
    figure = Figure(figsize=(11, 5), layout="constrained")
    ax = figure.add_subplot()
    owners = {label: label.split(" ")[0] for label in curves}
    colours = _colours([*methods, *sorted(set(owners.values()) - set(methods))])
    styles: dict[str, int] = {}
    for label, seeds in sorted(curves.items()):
        colour = colours[owners[label]]
        style = LINE_STYLES[styles.setdefault(owners[label], 0) % len(LINE_STYLES)]
        styles[owners[label]] += 1
        line = {"color": colour, "linestyle": style, "marker": "o", "markersize": 3}
        if all(steps == seeds[0][0] for steps, _ in seeds):
            accs = np.array([acc for _, acc in seeds])  # (seeds, steps)
            mean, std = accs.mean(axis=0), accs.std(axis=0)
            ax.plot(seeds[0][0], mean, label=label, **line)
            ax.fill_between(seeds[0][0], mean - std, mean + std, color=colour, alpha=0.2)
        else:
            for i, (steps, acc) in enumerate(seeds):
                ax.plot(steps, acc, alpha=0.6, label=label if i == 0 else None, **line)
    if curves:
        ax.set_xlabel("attack steps")
        ax.set_ylabel("forgotten-class accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        # outside the axes: a dozen methods × shot counts would hide the curves
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1), ncol=2)
    else:
        _no_data(ax, "relearn curves (prompt-recovery attack)")
    ax.set_title(f"{dataset}: relearn curves")
    return figure


def unlearn_time(summary: Mapping[str, float], dataset: str, methods: Sequence[str]) -> Figure:
    """Seconds per unlearning request, log scale: deleting a prompt and retraining a
    model sit orders of magnitude apart."""
    figure = Figure(figsize=(6, 0.8 + 0.45 * max(len(methods), 1)), layout="constrained")
    ax = figure.add_subplot()
    colours = _colours(methods)
    bars = [
        (method, value[0])
        for method in methods
        if (value := lookup(summary, dataset, method, UNLEARN_SECONDS)) is not None and value[0] > 0
    ]
    if bars:
        names = [m for m, _ in bars]
        ax.barh(names, [s for _, s in bars], color=[colours[m] for m in names])
        ax.set_xscale("log")
        seconds = [s for _, s in bars]
        ax.set_xlim(min(seconds) / 3, max(seconds) * 30)  # room for the value labels
        ax.invert_yaxis()  # first method on top, as in the table
        for i, value in enumerate(seconds):
            ax.text(value, i, f" {value:.3g} s", va="center", fontsize="small")
        ax.set_xlabel("seconds per unlearning request (log scale)")
        ax.grid(axis="x", alpha=0.3, which="both")
    else:
        _no_data(ax, "unlearning times")
    ax.set_title(f"{dataset}: unlearning time")
    return figure


def save(figure: Figure, path: Path) -> None:
    """PNG without the software-version stamp, so identical data gives identical bytes
    under one matplotlib version."""
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, metadata={
        "Software": None
    }))  # fmt: skip


def draw_all(
    summary: Mapping[str, float],
    curves: Mapping[str, Mapping[str, Sequence[Curve]]],
    k: int,
    folder: Path,
) -> dict[str, dict[str, Path]]:
    """Write every dataset's figures under ``folder/<dataset>/``; dataset → title → path."""
    written: dict[str, dict[str, Path]] = {}
    for dataset, methods in datasets_and_methods(summary).items():
        ordered = ordered_methods(methods)
        figures = {
            "forgotten vs retained accuracy": forget_vs_retain(summary, dataset, ordered, k),
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
