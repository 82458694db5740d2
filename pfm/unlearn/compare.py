"""Each method against ``retrain``, the gold reference, from their metrics files.

A method's accuracy gap is its value minus retrain's on the same dataset, seed and k
(retain: negative means utility lost; forget: positive means knowledge left), and its
RTE is its unlearning seconds over retrain's. Every method's metrics come from the same
draws, so the comparison is set for set.
"""

from collections.abc import Mapping, Sequence

from pfm.cost import rte

REFERENCE = "retrain"


def versus_retrain(
    metrics: Mapping[str, Mapping[str, float]], ks: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Per method, flat keys ``k{k}.retain_gap``, ``k{k}.forget_gap`` and ``k{k}.rte``."""
    if REFERENCE not in metrics:
        raise KeyError(f"no {REFERENCE!r} metrics to compare with; methods: {sorted(metrics)}")
    reference = metrics[REFERENCE]
    rows: dict[str, dict[str, float]] = {}
    for name, values in metrics.items():
        row = {}
        for k in ks:
            row[f"k{k}.retain_gap"] = (
                values[f"k{k}.retain_acc.mean"] - reference[f"k{k}.retain_acc.mean"]
            )
            row[f"k{k}.forget_gap"] = (
                values[f"k{k}.forget_acc.mean"] - reference[f"k{k}.forget_acc.mean"]
            )
            row[f"k{k}.rte"] = rte(
                values[f"k{k}.cost.unlearn_seconds.mean"],
                reference[f"k{k}.cost.unlearn_seconds.mean"],
            )
        rows[name] = row
    return rows
