"""Stage aggregate: every per-run metric file → metrics/summary.json, the headline metrics
(DVC's), the markdown report, its figures and their DVC plot data."""

import argparse
import os
from pathlib import Path

from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, section
from pfm.files import staged, write_json
from pfm.reporting.aggregate import (
    AggregateParams,
    collect,
    read_relearn_curves,
    source,
    summarise,
    to_json,
)
from pfm.reporting.headline import headline
from pfm.reporting.plot_data import write_plot_data
from pfm.reporting.plots import draw_all
from pfm.reporting.provenance import git_commit, provenance
from pfm.reporting.recipes import read_searches, recipe_lines
from pfm.reporting.report import GUIDE, render
from pfm.reporting.stage_times import read_stage_times, stage_time_lines
from pfm.tune.recipes import recipe_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--metrics", required=True, nargs="+", type=source, help="folders, or prefix=folder"
    )
    parser.add_argument("--curves", required=True, type=Path, help="relearn-curve folder")
    parser.add_argument("--summary", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path, help="markdown file")
    parser.add_argument("--figures", required=True, type=Path, help="folder for PNGs")
    parser.add_argument("--stage-times", type=Path, help="the stages' cost files (--times)")
    parser.add_argument("--headline", type=Path, help="the few keys DVC shows (JSON)")
    parser.add_argument("--plot-data", type=Path, help="folder for DVC's plot files")
    parser.add_argument("--tuned", type=Path, help="models/recipes/tuned: stage tune's recipes")
    args = parser.parse_args()
    params = load_params()
    config = from_mapping(AggregateParams, section(params, "aggregate"), "aggregate")
    summary = summarise(collect(args.metrics), config.margins())
    curves = read_relearn_curves(args.curves)
    header = provenance(params, config, git_commit(), summary)
    runs = [] if args.stage_times is None else read_stage_times(args.stage_times)
    with staged() as stage:  # killed or failed half-way, every output stays as it was
        write_json(stage.path(args.summary), to_json(summary))
        figures = draw_all(summary, curves, config, stage.path(args.figures))
        links = {
            dataset: {
                title: os.path.relpath(stage.final(path), args.report.parent)
                for title, path in f.items()
            }
            for dataset, f in figures.items()
        }
        if args.headline is not None:
            write_json(stage.path(args.headline), to_json(headline(summary, config, runs)))
        if args.plot_data is not None:
            write_plot_data(summary, curves, config, stage.path(args.plot_data))
        guide = os.path.relpath(GUIDE, args.report.parent)
        searches = {} if args.tuned is None else read_searches(args.tuned)
        recipes = recipe_lines(searches, recipe_source(params))
        text = render(summary, config, header, links, guide, stage_time_lines(runs), recipes)
        stage.path(args.report).write_text(text)
    print(f"aggregate: {len(summary)} summary keys, {len(figures)} dataset(s) → {args.report}")


if __name__ == "__main__":
    run_stage(main, "aggregate")
