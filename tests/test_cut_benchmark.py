"""``python -m pfm.cut_benchmark``: each arm's params, the per-stage ratios with restored
stages told apart, the figures judged against the before run's interval, and one real
run of both arms on the tiny project (a cut that changes the plain model only)."""

import json
import math
from pathlib import Path

import pytest
import yaml

from pfm.cut_benchmark import (
    arm_params,
    figure_moves,
    flat_result,
    main,
    stage_costs,
    stage_ratios,
    summary_of,
    targets,
    verdict_flips,
)
from pfm.files import write_json
from tests.test_pipeline import make_project, sh, tiny_params


def test_the_after_arm_is_the_before_arm_with_the_cut_and_both_hold_one_unit() -> None:
    params = {"datasets": ["digits", "bbc-news"], "seeds": [0, 1, 2], "train": {"epochs": 25}}
    profile = {"train": {"epochs": 10, "lr": 0.01}}
    arms = arm_params(params, profile, {"train": {"epochs": 3}}, "digits", 1)
    assert arms["before"] == {
        "datasets": ["digits"],
        "seeds": [1],
        "train": {"epochs": 10, "lr": 0.01},
    }
    assert arms["after"] == {
        "datasets": ["digits"],
        "seeds": [1],
        "train": {"epochs": 3, "lr": 0.01},
    }
    with pytest.raises(ValueError, match="seeds"):
        arm_params(params, profile, {"seeds": [0]}, "digits", 1)


def test_a_stage_named_with_its_item_keeps_it() -> None:
    assert targets(["train", "prepare@digits"], "digits", 2) == ["train@digits-2", "prepare@digits"]


def test_each_figure_is_judged_against_the_before_runs_interval_and_timings_are_left_out() -> None:
    before = {
        "d.a.acc.mean": 0.5, "d.a.acc.ci95": 0.1,
        "d.b.acc.mean": 0.5, "d.b.acc.ci95": 0.1,
        "d.c.acc.mean": 0.5, "d.c.acc.ci95": 0.1,
        "d.e.acc.mean": 0.5,
        "d.f.acc.mean": math.nan, "d.f.acc.ci95": math.nan,
        "d.a.cost.unlearn_seconds.mean": 10.0,
        "d.a.acc.std": 0.3,
    }  # fmt: skip
    after = {
        **before,
        "d.b.acc.mean": 0.58,
        "d.c.acc.mean": 0.65,
        "d.e.acc.mean": 0.4,
        "d.a.cost.unlearn_seconds.mean": 3.0,
    }
    verdicts = {m.key: m.verdict for m in figure_moves(before, after)}
    assert not [m for m in figure_moves(before, after) if m.scored]
    assert verdicts == {
        "d.a.acc.mean": "equal",
        "d.b.acc.mean": "within",
        "d.c.acc.mean": "outside",
        "d.e.acc.mean": "no interval",
        "d.f.acc.mean": "equal",
    }


def _cost_file(root: Path, stage: str, wall: float) -> None:
    write_json(
        root / "metrics" / "stages" / stage / "digits" / "seed0.json",
        {
            f"stage.{stage}.{k}": v
            for k, v in (("wall_seconds", wall), ("cpu_seconds", wall), ("peak_rss_mib", 9.0))
        },
    )


def test_a_stage_the_run_cache_restored_is_marked_and_the_ratio_is_after_over_before(
    tmp_path: Path,
) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    for arm, unlearn in ((before, 200.0), (after, 50.0)):
        _cost_file(arm, "train", 100.0)
        _cost_file(arm, "unlearn", unlearn)
    rows = {row.stage: row for row in stage_ratios(stage_costs(before), stage_costs(after))}
    assert rows["train"].restored and not rows["unlearn"].restored
    assert rows["unlearn"].ratio("wall_seconds") == 0.25
    flat = flat_result(list(rows.values()), [])
    assert flat["stage.unlearn.wall_seconds.ratio"] == 0.25
    assert flat["stage.train.restored"] == 1.0 and flat["figures.equal"] == 0.0


@pytest.mark.slow
def test_both_arms_run_and_a_cut_of_the_plain_recipe_leaves_the_prompt_models_figures_equal(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "project", tiny_params())
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "tiny", cwd=project)
    cut = tmp_path / "cut.yaml"
    cut.write_text(yaml.safe_dump({"train_base": {"epochs": 2}}))
    out = tmp_path / "out"
    argv = ["--cut", str(cut), "--stages", "train", "--out", str(out)]
    result = main([*argv, "--root", str(project), "--work", str(tmp_path / "work")])
    assert result["stage.train.restored"] == 0.0 and result["stage.prepare.digits.restored"] == 1.0
    assert result["stage.train.wall_seconds.ratio"] > 0
    assert json.loads((out / "cut.json").read_text()) == result
    work = tmp_path / "work"
    moves = figure_moves(summary_of(work / "before"), summary_of(work / "after"))
    prompt = [m.verdict for m in moves if m.key.startswith("digits.pfm.")]
    assert prompt and set(prompt) == {"equal"}  # the prompt model retrained to the same bits
    plain = {m.key: m for m in moves if m.key.startswith("digits.plain.")}
    assert (plain["digits.plain.epochs.mean"].before, plain["digits.plain.epochs.mean"].after) == (
        1,
        2,
    )
    assert result["figures.equal"] == sum(m.verdict == "equal" for m in moves) < len(moves)
    assert "digits.plain.epochs.mean" in (out / "cut.md").read_text()


def test_the_accuracies_the_verdicts_rest_on_are_counted_apart_from_counts() -> None:
    before = {
        "digits.ssd.k1.forget_acc.mean": 0.04, "digits.ssd.k1.forget_acc.ci95": 0.07,
        "digits.ssd.k1.cost.optimizer_steps.mean": 310.0,
        "digits.ssd.samples.test_acc.mean": 0.9, "digits.ssd.samples.test_acc.ci95": 0.01,
    }  # fmt: skip
    after = {
        "digits.ssd.k1.forget_acc.mean": 0.18,
        "digits.ssd.k1.cost.optimizer_steps.mean": 93.0,
        "digits.ssd.samples.test_acc.mean": 0.9,
    }
    moves = figure_moves(before, after)
    assert {m.key: m.scored for m in moves} == {
        "digits.ssd.k1.forget_acc.mean": True,
        "digits.ssd.k1.cost.optimizer_steps.mean": False,
        "digits.ssd.samples.test_acc.mean": True,
    }
    flat = flat_result([], moves)
    assert (flat["scored.outside"], flat["scored.equal"], flat["figures.no_interval"]) == (1, 1, 1)


def test_a_verdict_the_cut_changes_is_named_with_both_words() -> None:
    before = {
        "d.ssd.k1.forget_acc.verdict": -1.0,
        "d.scrub.k1.forget_acc.verdict": 0.0,
        "x.mean": 1.0,
    }
    after = {"d.ssd.k1.forget_acc.verdict": 1.0, "d.scrub.k1.forget_acc.verdict": 0.0}
    flips = verdict_flips(before, after)
    assert flips == {"d.ssd.k1.forget_acc": ("apart", "equivalent")}
    flat = flat_result([], [], flips, 2)
    assert (flat["verdicts.changed"], flat["verdicts.compared"]) == (1, 2)
