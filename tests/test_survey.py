"""The backbone survey: candidates parse, the bar reads the right modes, and one real
candidate trains through the one training loop and reports its curve and cost."""

import pytest

from pfm.survey import Candidate, measure, meets_bar, table
from pfm.train import TrainConfig
from tests.conftest import toy_dataset

MODEL = {"backbone": "unused", "final_layernorm": True, "lora": {"r": 2, "alpha": 2}}


def test_candidates_parse_backbone_and_pixels() -> None:
    candidate = Candidate.parse("models/backbones/dinov2-small@28")
    assert candidate == Candidate("models/backbones/dinov2-small", 28)
    assert candidate.name == "dinov2-small@28"
    for bad in ("vit-tiny", "vit-tiny@", "@16", "vit-tiny@x", "vit-tiny@0"):
        with pytest.raises(ValueError, match="BACKBONE@PIXELS"):
            Candidate.parse(bad)


@pytest.mark.parametrize(
    ("full_bank", "all_wrong", "none", "meets"),
    [
        (0.90, 0.10, 0.30, True),  # every bound is inclusive
        (0.89, 0.05, 0.10, False),  # classifies too little
        (0.99, 0.11, 0.10, False),  # forgets too little
        (0.99, 0.05, 0.31, False),  # classifies without its prompts
    ],
)
def test_the_bar_needs_all_three(full_bank: float, all_wrong: float, none: float, meets: bool):
    record = {"val.full_bank": full_bank, "val.all_wrong": all_wrong, "val.none": none}
    assert meets_bar(record) is meets


def test_a_candidate_trains_and_reports_its_curve_and_cost() -> None:
    config = TrainConfig(epochs=2, batch_size=8, lr=3e-3, prompt_lr=3e-2,
                         eval_modes=("full_bank", "all_wrong", "none"))  # fmt: skip
    row = measure(Candidate("vit-tiny", 16), MODEL, config, toy_dataset(), seed=0)
    assert [r["epoch"] for r in row["history"]] == [1, 2]
    assert row["val.none"] == row["history"][-1]["val.none"]
    assert row["flops_per_sample"] > 0 and row["seconds_per_epoch"] > 0
    expected_first = next((r["epoch"] for r in row["history"] if meets_bar(r)), None)
    assert row["first_epoch_meeting_bar"] == expected_first
    twice = {**row, "candidate": "twice", "flops_per_sample": 2 * row["flops_per_sample"]}
    markdown = table([row, twice], row["flops_per_sample"])
    assert "`vit-tiny@16`" in markdown and "(2.0×)" in markdown
