"""What every attack shares: which saved forget sets ("draws") it attacks, and how its
per-draw numbers are kept.

The unlearn stage saves one model per draw (``pfm.unlearn.manifest``); every method's
draws are the same sets, so attacking the first ``limit`` draws of a k hits the same
sets for every method and for the reference. Each attack writes its per-draw numbers
twice: pooled (``pfm.evaluate.pool``: ``<key>.mean``/``.std``, the metrics) and as a
``units`` list of per-draw records, from which ``pfm.reporting.aggregate`` draws confidence
intervals.
"""

from collections.abc import Mapping, Sequence
from typing import Any


def select_draws(
    manifest: Mapping[str, Any], k: int, limit: int | None = None
) -> list[dict[str, Any]]:
    """The first ``limit`` (``None``: all) manifest draws that forget ``k`` classes."""
    check_limit(limit)
    draws = [dict(d) for d in manifest["draws"] if d["k"] == k]
    if not draws:
        found = sorted({d["k"] for d in manifest["draws"]})
        raise ValueError(
            f"the {manifest['method']} models hold no draw with k={k} (found k in {found}); "
            f"attack a k the unlearn stage ran (unlearn.k)"
        )
    return draws[:limit]


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"the number of draws to attack must be ≥ 1 or null, got {limit}")


def matching_draw(manifest: Mapping[str, Any], classes: Sequence[int]) -> dict[str, Any]:
    """The draw of ``manifest`` that forgets exactly ``classes`` (a reference model for
    an attacked draw)."""
    for draw in manifest["draws"]:
        if sorted(draw["classes"]) == sorted(classes):
            return dict(draw)
    raise ValueError(
        f"the {manifest['method']} models hold no draw forgetting classes {list(classes)}; "
        "rerun the stage that saved them"
    )
