"""The report's table of the sample protocol (stage forget-samples, ``pfm.samples``):
PI-Prefix's own setting, where a forget set is a share of the training rows. Its
columns are the authors' (forget-set, retain-set and test accuracy, time), plus what
their tables lack: the base model's accuracy on the same rows before forgetting, and
``retrain`` as the reference every method is paired with on the same rows."""

from collections.abc import Mapping, Sequence

from pfm.reporting.aggregate import lookup
from pfm.reporting.table import Column, grid, metric, no_op_flag, rows_of, scored, usual_n
from pfm.reporting.verdicts import comparisons, verdict_line

COMPARED = (
    ("samples.forget_acc", "Forget-set acc"),
    ("samples.retain_acc", "Retain-set acc"),
    ("samples.test_acc", "Test acc"),
)


def sample_columns(artifact: bool) -> list[Column]:
    """The table's columns; PI-Prefix's saved artifact beside its headline where scored."""
    columns = [
        scored("forget-set acc", "samples.forget_acc"),
        Column("before forgetting", metric("samples.base.forget_acc")),
        scored("retain-set acc", "samples.retain_acc"),
        scored("test acc", "samples.test_acc"),
        scored("unlearn s", "samples.cost.unlearn_seconds", "seconds"),
        Column("flag", no_op_flag("samples.no_op"), "text"),
    ]
    if artifact:
        saved = Column("forget-set acc, saved artifact", metric("samples.artifact.forget_acc"))
        columns.insert(2, saved)
    return columns


def sample_section(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], margin: float
) -> list[str]:
    """The table and its verdict lines; nothing where no method ran the protocol."""
    shown = [m for m in methods if lookup(summary, dataset, m, ["samples.forget_acc"])]
    if not shown:
        return []
    artifact = any(lookup(summary, dataset, m, ["samples.artifact.forget_acc"]) for m in shown)
    columns = sample_columns(artifact)
    n = usual_n(v for values in rows_of(summary, dataset, shown, columns).values() for v in values)
    rows = lookup(summary, dataset, shown[0], ["samples.rows"])
    size = f"{rows.mean:.0f} training rows per set" if rows is not None else "training rows"
    lines = [
        verdict_line(comparisons(summary, dataset, shown, name), title, margin)
        for name, title in COMPARED
    ]
    return [
        f"### Forgetting samples ({size}; PI-Prefix's own setting)",
        "",
        *([f"Cells: n = {n} unless marked `(n=…)`.", ""] if n is not None else []),
        grid(summary, dataset, shown, columns, n),
        "",
        "A forgotten row's class stays in the task: exact unlearning (`retrain`) answers "
        "on those rows about as on unseen data, not at chance; `before forgetting` is the "
        "base model on the same rows.",
        "",
        *(line for line in lines if line),
        "",
    ]
