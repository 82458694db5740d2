"""Reporting: every per-run metric file → ``metrics/summary.json``, ``reports/results.md``
and its figures (the ``aggregate`` stage). One job per module:

- ``aggregate``: collect the metric files, estimate units nested in seeds and compare
  each method with its reference, paired (``pfm.stats``); gaps, RTE and flags; the
  summary's keys.
- ``verdicts``: the generated lines (equivalent / apart / inconclusive with intervals).
- ``recovery``: the recovery ladder, its collapse and specificity checks, the largest
  valid residual.
- ``table``: one cell's text, the bold rule (a win needs non-overlapping intervals), a
  methods × columns grid in the order the report shows methods.
- ``report``: the markdown report's sections, built from the summary alone.
- ``provenance``: the lines saying what produced the numbers and the units they rest on.
- ``plots``: the report's matplotlib figures.
- ``plot_data``: the forest and relearn data DVC's plot templates draw (``dvc plots diff``).
- ``headline``: ``metrics/headline.json``, the few keys DVC shows as metrics.
- ``stage_times``: the stages' own time and memory files (``pfm.stage_clock``) as a table.
"""
