"""Stage hand-recipes: params' recipe of every listed method (``unlearn.<method>``) as the
recipes file stage unlearn reads under ``recipes: hand`` (``pfm.tune.recipes``), so that
stage depends on params alone there, not on stage tune's search."""

import argparse
from pathlib import Path

from pfm.cli import run_stage
from pfm.config import load_params
from pfm.tune.recipes import write_hand


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="YAML of the hand recipes")
    args = parser.parse_args()
    write_hand(args.out, load_params())
    print(f"hand-recipes → {args.out}")


if __name__ == "__main__":
    run_stage(main, "hand-recipes")
