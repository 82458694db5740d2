"""Stage validate: the whole params.yaml checked before any other stage runs.

DVC removes a stage's outputs before it runs it, so a value a stage refuses has already
cost that stage's outputs (git-tracked metrics included). Every root stage of dvc.yaml
depends on this stage's marker file, so ``dvc repro`` and ``dvc exp run`` run this check
first and stop at its one ``error:`` line with every output as it was. The marker's
text never changes: a param change reruns this check, never the stages after it."""

import argparse
from pathlib import Path

from pfm.cli import run_stage
from pfm.config import load_params
from pfm.files import write_atomic
from pfm.validate import check_params

MARKER = "params.yaml passed stage validate (pfm/validate.py); the root stages depend on this.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="marker file, written on success")
    args = parser.parse_args()
    warnings = check_params(load_params())
    write_atomic(args.out, lambda tmp: tmp.write_text(MARKER))
    for warning in warnings:
        print(f"warning: {warning}")
    print("params.yaml: every section valid")


if __name__ == "__main__":
    run_stage(main, "validate")
