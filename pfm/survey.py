"""Backbone candidates for the default profile, measured on validation before one is chosen.

``python -m pfm.survey --data data/prepared/digits --out reports/survey/digits
BACKBONE@PX ...`` trains the prompt model on each candidate with the ``train`` recipe of
params.yaml (the one training loop, every mode scored on validation after every epoch)
and writes, per candidate, the validation curve and what the choice rests on: no-forget
accuracy (``full_bank``), the k = 1 forgotten proxy (``all_wrong``: every prompt but the
true class's), the output without prompts (``none``: near chance when the prompts carry
the class), seconds per epoch, FLOPs per sample and the epoch at which the prompt model
first meets the default's bar. Candidates train side by side in ``workers`` single-thread
processes, as the train stage's models do. Test is never read here.
"""

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from pfm.batches import SplitTensors
from pfm.cli import run_stage
from pfm.config import from_mapping, load_params, section
from pfm.cost import model_cost
from pfm.data import PreparedDataset, load_prepared
from pfm.files import write_json
from pfm.losses import prompt_objective
from pfm.models.prompted import build_model
from pfm.parallel import run_all
from pfm.specs import model_spec
from pfm.train import TrainConfig, resolve_device, train

MODES = ("full_bank", "all_wrong", "none")
# The default backbone's bar (validation here, test in the pipeline): no-forget accuracy,
# k = 1 forgotten accuracy, accuracy without prompts.
BAR = {"full_bank": (">=", 0.90), "all_wrong": ("<=", 0.10), "none": ("<=", 0.30)}


@dataclass(frozen=True)
class Candidate:
    backbone: str
    input_size: int

    @classmethod
    def parse(cls, text: str) -> "Candidate":
        backbone, _, size = text.rpartition("@")
        if not backbone or not size.isdigit() or int(size) < 1:
            raise ValueError(f"candidate {text!r}: expected BACKBONE@PIXELS, e.g. vit-tiny@16")
        return cls(backbone, int(size))

    @property
    def name(self) -> str:
        return f"{Path(self.backbone).name}@{self.input_size}"


def meets_bar(record: Mapping[str, float]) -> bool:
    return all(
        record[f"val.{mode}"] >= bound if sign == ">=" else record[f"val.{mode}"] <= bound
        for mode, (sign, bound) in BAR.items()
    )


def measure(
    candidate: Candidate,
    model_params: Mapping[str, Any],
    config: TrainConfig,
    dataset: PreparedDataset,
    seed: int,
) -> dict[str, Any]:
    """One candidate's prompt model trained from ``seed``; its validation curve and cost."""
    values = {**model_params, "backbone": candidate.backbone, "input_size": candidate.input_size}
    spec = model_spec(values, dataset.num_classes, True, dataset.data_type, dataset.answer_tokens)
    model = build_model(spec, seed)
    device = resolve_device(config.device)
    train_data, val_data = (
        SplitTensors(dataset.splits[s], model.input_size, device) for s in ("train", "val")
    )
    print(f"{candidate.name}: training {config.epochs} epochs", flush=True)
    result = train(model, prompt_objective(config.kl_weight), train_data, val_data, config,
                   seed, None, candidate.name)  # fmt: skip
    example, _ = next(val_data.batches(8))
    cost = model_cost(model, example, device)
    settled = next((r["epoch"] for r in result.history if meets_bar(r)), None)
    last = result.history[-1]
    return {
        "candidate": candidate.name,
        "backbone": candidate.backbone,
        "input_size": candidate.input_size,
        "epochs": config.epochs,
        **{f"val.{mode}": last[f"val.{mode}"] for mode in MODES},
        "meets_bar": meets_bar(last),
        "first_epoch_meeting_bar": settled,
        "seconds_per_epoch": result.train_seconds / max(config.epochs, 1),
        "flops_per_sample": cost["cost.flops_per_sample"],
        "params_total": cost["cost.params.total"],
        "history": result.history,
    }


def table(rows: Sequence[Mapping[str, Any]], baseline_flops: float) -> str:
    """The candidates as a Markdown table, FLOPs also relative to the first candidate."""
    lines = [
        "| candidate | epochs | val full_bank | val all_wrong | val none | s/epoch "
        "| GFLOPs/sample (× first) | first epoch at the bar |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        flops = row["flops_per_sample"]
        lines.append(
            f"| `{row['candidate']}` | {row['epochs']} | {row['val.full_bank']:.3f} "
            f"| {row['val.all_wrong']:.3f} | {row['val.none']:.3f} "
            f"| {row['seconds_per_epoch']:.1f} | {flops / 1e9:.3f} ({flops / baseline_flops:.1f}×) "
            f"| {row['first_epoch_meeting_bar'] or '—'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("candidates", nargs="+", type=Candidate.parse, help="BACKBONE@PIXELS")
    parser.add_argument("--data", type=Path, required=True, help="a prepared image dataset")
    parser.add_argument("--out", type=Path, required=True, help="folder for survey.json/.md")
    parser.add_argument("--epochs", type=int, help="epochs per candidate (default: train's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    params = load_params()
    config = from_mapping(TrainConfig, section(params, "train"), "train")
    config = replace(config, eval_modes=MODES, epochs=args.epochs or config.epochs)
    dataset = load_prepared(args.data)
    jobs = [
        partial(measure, c, section(params, "model"), config, dataset, args.seed)
        for c in args.candidates
    ]
    rows = run_all(jobs, params["workers"], resolve_device(config.device))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "survey.json", {"dataset": dataset.name, "seed": args.seed,
                                          "candidates": rows})  # fmt: skip
    markdown = table(rows, rows[0]["flops_per_sample"])
    (args.out / "survey.md").write_text(markdown)
    print(markdown, end="")
    print(json.dumps({r["candidate"]: r["meets_bar"] for r in rows}))


if __name__ == "__main__":
    run_stage(main, "survey")
