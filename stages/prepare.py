"""Stage prepare: build one dataset from its source and write the prepared format."""

import argparse

from pfm.cli import run_stage
from pfm.config import load_params, section
from pfm.data import build_dataset, save_prepared
from pfm.files import staged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True, help="folder for data.npz and counts.json")
    args = parser.parse_args()
    options = section(load_params(), "data").get(args.dataset) or {}  # an empty block: defaults
    dataset = build_dataset(args.dataset, options)
    with staged() as stage:  # the folder's two files move in together, or neither
        save_prepared(dataset, stage.path(args.out))
    sizes = ", ".join(f"{name} {len(split)}" for name, split in dataset.splits.items())
    print(f"prepared {dataset.name}: {dataset.num_classes} classes; {sizes}")


if __name__ == "__main__":
    run_stage(main, "prepare")
