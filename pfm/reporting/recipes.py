"""The report's recipe section: which recipes its rows ran (params' top-level
``recipes``) and what stage tune's equal-budget search found for each method — trials,
the validation objective of the hand recipe and of the best trial (distance to the
reference, lower is closer), and each searched field hand → tuned.

It reads stage tune's files only (``pfm.tune.recipes``), never a test number: the test
figures of the tuned recipes are a run under ``recipes: tuned`` (``dvc exp run -S
recipes=tuned``), whose unlearn metrics record the recipe they ran (``recipe.*``)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

Searches = dict[str, dict[str, Any]]  # dataset → stage tune's file for it


def read_searches(folder: Path) -> Searches:
    """Each ``<dataset>.yaml`` stage tune wrote in ``folder``; none if it has not run."""
    return {path.stem: yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yaml"))}


def brief(value: Any) -> str:
    """Four significant digits for a searched float, the value as it is otherwise."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def field_changes(hand: Mapping[str, Any], tuned: Mapping[str, Any]) -> str:
    """``name hand → tuned`` for each searched field, ``;``-separated."""
    return "; ".join(f"{f} {brief(hand[f])} → {brief(v)}" for f, v in tuned.items())


def recipe_lines(searches: Searches, source: str) -> list[str]:
    """Markdown lines: the source the report's rows ran under, then per dataset one row
    per tuned method (no table where none was) and one line listing the untunable ones
    with their reason."""
    lines = [f"The rows above ran the **{source}** recipes (params `recipes`)."]
    for dataset, document in searches.items():
        search, tuned = document["search"], document["recipes"]
        rows = [
            [
                method, str(found["trials"]),
                f"{found['hand_objective']:.3f} → {found['best_objective']:.3f}",
                field_changes(found["hand"], tuned[method]),
            ]
            for method, found in search.items()
        ]  # fmt: skip
        headers = ["method", "trials", "val. objective hand → tuned ↓", "recipe hand → tuned"]
        lines += ["", f"{dataset}, stage tune (validation only):"]
        if rows:
            table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
            lines += ["", *table.splitlines()]
        untunable = document["untunable"]
        if untunable:
            reasons = ", ".join(f"`{m}` ({why})" for m, why in untunable.items())
            lines += ["", f"Not tuned: {reasons}."]
    return lines
