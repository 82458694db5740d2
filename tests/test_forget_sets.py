"""Sample-level forget sets: drawing them, the runner slicing by row, which methods serve
them, and the sample protocol's scores on known answers."""

import math

import numpy as np
import pytest
import torch

from pfm.batches import SplitTensors
from pfm.cost import CostRecord
from pfm.evaluate import predict
from pfm.forget_sets import FORGET_KINDS, ForgetSet, draw_sample_sets
from pfm.models.prompted import PromptedClassifier
from pfm.samples import SampleScorer, forget_samples
from pfm.unlearn import METHODS, unlearn
from pfm.unlearn.base import Request, TrainRecipe
from pfm.unlearn.base import method as declare
from tests import test_unlearn
from tests.conftest import make_model
from tests.test_unlearn import DATA, quick_recipe, spied_request

plain = test_unlearn.plain  # the fixture: a plain classifier that has learnt the toy task
CPU = torch.device("cpu")
TRAIN = DATA.splits["train"]  # 24 rows, 6 a class
ROWS = ForgetSet.of_rows([5, 0, 17, 5])


def test_a_forget_set_is_sorted_and_distinct_and_masks_its_own_rows() -> None:
    assert ForgetSet.of_classes([2, 1, 2]) == ForgetSet("classes", (1, 2))
    assert ROWS.members == (0, 5, 17) and ROWS.kind == "samples"
    labels = TRAIN.labels
    assert np.flatnonzero(ROWS.mask(labels)).tolist() == [0, 5, 17]
    assert np.array_equal(ForgetSet.of_classes([1]).mask(labels), labels == 1)


def test_a_forget_set_refuses_nothing_everything_and_what_does_not_exist() -> None:
    with pytest.raises(ValueError, match="forget 1..23 rows, got 0"):
        ForgetSet.of_rows([]).check(4, 24)
    with pytest.raises(ValueError, match="forget 1..23 rows, got 24"):
        ForgetSet.of_rows(range(24)).check(4, 24)
    with pytest.raises(ValueError, match=r"rows \[24\] out of range 0..23"):
        ForgetSet.of_rows([3, 24]).check(4, 24)
    with pytest.raises(ValueError, match="forget 1..3 classes"):
        ForgetSet.of_classes(range(4)).check(4, 24)
    ROWS.check(4, 24)


def test_digests_tell_sets_apart_and_agree_on_equal_ones() -> None:
    assert ROWS.digest() == ForgetSet.of_rows([17, 5, 0]).digest()
    assert ROWS.digest() != ForgetSet.of_rows([0, 5, 18]).digest()
    assert ROWS.digest() != ForgetSet.of_classes([0, 5, 17]).digest()


def test_sample_draws_are_seeded_sized_and_extend_without_changing_their_head() -> None:
    sets = draw_sample_sets(1000, 0.03, 3, seed=0)
    assert [len(s.members) for s in sets] == [30, 30, 30]
    assert all(s.kind == "samples" and max(s.members) < 1000 for s in sets)
    assert len({s.digest() for s in sets}) == 3
    assert draw_sample_sets(1000, 0.03, 5, seed=0)[:3] == sets
    assert draw_sample_sets(1000, 0.03, 3, seed=1) != sets
    assert len(draw_sample_sets(10, 0.01, 1, 0)[0].members) == 1  # at least one row
    assert len(draw_sample_sets(10, 0.99, 1, 0)[0].members) == 9  # never every row
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            draw_sample_sets(1000, fraction, 1, 0)
    with pytest.raises(ValueError, match="at least one"):
        draw_sample_sets(1000, 0.1, 0, 0)


def test_what_deletes_a_class_serves_classes_alone_and_the_rest_serve_both() -> None:
    class_only = {name for name in METHODS if METHODS.get(name).serves == ("classes",)}
    assert class_only == {"pfm", "pfm_defended"}
    assert all(set(METHODS.get(n).serves) == set(FORGET_KINDS) for n in set(METHODS) - class_only)
    with pytest.raises(ValueError, match="serves must name some of"):
        declare("x", recipe=TrainRecipe, needs_forget=True, needs_retain=False, serves=("rows",))


def test_a_class_only_method_refuses_a_sample_set_and_names_those_that_serve_it() -> None:
    prompted = make_model().eval()
    with pytest.raises(ValueError, match=r"pfm forgets classes only, not samples.*'retrain'"):
        unlearn("pfm", prompted, ROWS, TRAIN, quick_recipe("pfm"), 0)


def test_a_sample_request_has_no_classes() -> None:
    request = Request(make_model(), ROWS, None, None, None, 0)
    with pytest.raises(ValueError, match="forgets samples, not classes"):
        _ = request.classes


@pytest.mark.parametrize("name", [n for n in METHODS if "samples" in METHODS.get(n).serves])
def test_a_sample_request_hands_a_method_exactly_the_set_rows_and_the_rest(
    name: str, plain: PromptedClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    declared = METHODS.get(name)
    request = spied_request(name, plain, ROWS, quick_recipe(name), 3, monkeypatch)
    assert request.forget_set == ROWS
    inside = ROWS.mask(TRAIN.labels)
    for handle, rows, mark in ((request.forget, inside, True), (request.retain, ~inside, False)):
        if handle is None:
            continue
        assert torch.equal(handle.inputs, torch.from_numpy(TRAIN.inputs[rows]))
        assert torch.equal(handle.labels, torch.from_numpy(TRAIN.labels[rows]))
        assert bool(handle.forget.all()) if mark else not bool(handle.forget.any())
    assert (request.forget is not None) == declared.needs_forget
    assert (request.retain is not None) == declared.needs_retain


def test_retrain_on_a_sample_set_reads_every_other_row_and_none_of_the_set(
    plain: PromptedClassifier, seen_labels: list[int]
) -> None:
    recipe = TrainRecipe(epochs=2, batch_size=8, lr=1e-2)
    _, cost = unlearn("retrain", plain, ROWS, TRAIN, recipe, 0)
    kept = np.delete(TRAIN.labels, list(ROWS.members)).tolist()
    assert sorted(seen_labels) == sorted(2 * kept)
    assert cost.samples_touched == 2 * 21
    assert cost.optimizer_steps == 2 * math.ceil(21 / 8)


def scorer() -> SampleScorer:
    size = make_model(with_prompts=False).input_size
    splits = (SplitTensors(DATA.splits[s], size, CPU) for s in ("train", "test"))
    return SampleScorer(*splits, seed=0, batch_size=16, precision="fp32")


def free(model: PromptedClassifier) -> tuple[PromptedClassifier, CostRecord]:
    return model, CostRecord(0.0, 0, 0, False, False, 0)


def test_scores_split_the_train_rows_by_the_set_and_score_test_apart(
    plain: PromptedClassifier,
) -> None:
    correct = predict(plain, scorer().train, "full_bank", 16) == TRAIN.labels
    correct_test = predict(plain, scorer().test, "full_bank", 16) == DATA.splits["test"].labels
    scores = scorer().scores(plain, ROWS)
    inside = ROWS.mask(TRAIN.labels)
    assert scores == {
        "forget_acc": float(correct[inside].mean()),
        "retain_acc": float(correct[~inside].mean()),
        "test_acc": float(correct_test.mean()),
    }


def test_a_method_that_changes_nothing_scores_its_base_on_the_forgotten_rows(
    plain: PromptedClassifier,
) -> None:
    """Known answer: the identity unlearner's forget accuracy is the base model's on the
    same rows, set by set, and every unit records which rows it forgot."""
    sets = draw_sample_sets(len(TRAIN.labels), 0.25, 3, seed=0)
    metrics = forget_samples(lambda _: free(plain), plain, scorer(), sets)
    units = metrics.pop("units")
    assert [u["set"] for u in units] == [0, 1, 2]
    assert [u["digest"] for u in units] == [s.digest() for s in sets]
    assert all(u["rows"] == 6 and u["forget_acc"] == u["base.forget_acc"] for u in units)
    assert metrics["samples.sets"] == 3 and metrics["samples.rows"] == 6
    for key in ("forget_acc", "retain_acc", "test_acc", "base.forget_acc", "cost.unlearn_seconds"):
        values = [u[key] for u in units]
        assert metrics[f"samples.{key}.mean"] == pytest.approx(np.mean(values))


def test_variants_are_scored_under_their_own_keys(plain: PromptedClassifier) -> None:
    untrained = make_model(with_prompts=False, seed=1).eval()
    sets = draw_sample_sets(len(TRAIN.labels), 0.25, 2, seed=0)
    metrics = forget_samples(
        lambda _: free(plain), plain, scorer(), sets, variants=lambda _: {"other": untrained}
    )
    for unit, forget_set in zip(metrics["units"], sets, strict=True):
        assert unit["other.forget_acc"] == scorer().scores(untrained, forget_set)["forget_acc"]
    assert "samples.other.test_acc.mean" in metrics


def test_the_protocol_refuses_class_sets(plain: PromptedClassifier) -> None:
    with pytest.raises(ValueError, match="sample forget sets"):
        forget_samples(lambda _: free(plain), plain, scorer(), [ForgetSet.of_classes([1])])
