"""Stage aggregate: every per-run metric file → metrics/summary.json, the markdown report
and its figures."""

import argparse
import os
from pathlib import Path

from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, section
from pfm.files import write_atomic, write_json
from pfm.reporting.aggregate import (
    AggregateParams,
    collect,
    read_relearn_curves,
    source,
    summarise,
    to_json,
)
from pfm.reporting.plots import draw_all
from pfm.reporting.provenance import git_commit, provenance
from pfm.reporting.report import GUIDE, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--metrics", required=True, nargs="+", type=source, help="folders, or prefix=folder"
    )
    parser.add_argument("--curves", required=True, type=Path, help="relearn-curve folder")
    parser.add_argument("--summary", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path, help="markdown file")
    parser.add_argument("--figures", required=True, type=Path, help="folder for PNGs")
    args = parser.parse_args()
    params = load_params()
    config = from_mapping(AggregateParams, section(params, "aggregate"), "aggregate")
    summary = summarise(collect(args.metrics))
    write_json(args.summary, to_json(summary))
    figures = draw_all(summary, read_relearn_curves(args.curves), config.k, args.figures)
    links = {
        dataset: {title: os.path.relpath(path, args.report.parent) for title, path in f.items()}
        for dataset, f in figures.items()
    }
    header = provenance(params, config, git_commit(), summary)
    guide = os.path.relpath(GUIDE, args.report.parent)
    text = render(summary, config.k, header, links, guide)
    write_atomic(args.report, lambda tmp: tmp.write_text(text))
    print(f"aggregate: {len(summary)} summary keys, {len(figures)} dataset(s) → {args.report}")


if __name__ == "__main__":
    run_stage(main)
