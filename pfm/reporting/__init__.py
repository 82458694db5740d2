"""Reporting: every per-run metric file → ``metrics/summary.json``, ``reports/results.md``
and its figures (the ``aggregate`` stage). One job per module:

- ``aggregate``: collect the metric files, pool units into estimates with 95 % intervals,
  derive gaps, RTE and flags; the summary's keys.
- ``table``: one cell's text, the bold rule (a win needs non-overlapping intervals), a
  methods × columns grid in the order the report shows methods.
- ``report``: the markdown report's sections, built from the summary alone.
- ``provenance``: the lines saying what produced the numbers and the units they rest on.
- ``plots``: the report's matplotlib figures.
"""
