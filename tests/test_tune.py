"""Stage tune (``pfm.tune``): every method's search space is declared on its recipe and
checked at validate, the tuning sets are none the report scores, the search is
reproducible and never reads the test split, and stage unlearn runs exactly the file the
search wrote when ``recipes: tuned``."""

import copy
import dataclasses
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

import optuna
import pytest
import torch
import yaml

from pfm.attacks import MiaParams
from pfm.config import Choice, OneOf, ParamError, Share, Uniform, load_params
from pfm.data.prepared import PreparedDataset, Split
from pfm.losses import FORGET_TARGETS
from pfm.models.checkpoint import save_model
from pfm.reporting.recipes import brief, read_searches, recipe_lines
from pfm.tune.objective import Scoring
from pfm.tune.params import ObjectiveWeights, TuneParams
from pfm.tune.recipes import (
    applied,
    read_document,
    recipe_record,
    recipe_source,
    write_hand,
    write_tuned,
)
from pfm.tune.search import Outcome, tune_dataset
from pfm.tune.sets import scored_sets, tuning_sets
from pfm.tune.space import check_space, plan, search_space
from pfm.tune.study import best_trial, summary, write_studies
from pfm.unlearn import METHODS, read_params, unlearn_params
from pfm.unlearn.base import TrainRecipe
from pfm.unlearn.pi_prefix import PrefixRecipe
from pfm.unlearn.ssd import SsdRecipe
from pfm.validate import check_params
from tests.conftest import make_model, toy_dataset

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_declares_a_space_its_recipe_takes_or_says_why_not(method: str) -> None:
    """Registry-parametrised: a new method is checked the day it is registered."""
    check_space(METHODS.get(method).recipe, f"unlearn.{method}")
    found = plan(method)
    assert found.tunable == bool(found.space)
    assert found.tunable or found.reason


def test_the_prompt_model_and_the_reference_are_listed_untunable() -> None:
    untunable = "its recipe declares no search space"
    assert plan("pfm").reason == plan("pfm_defended").reason == untunable
    assert "reference" in plan("retrain").reason
    assert "epochs" not in search_space(TrainRecipe) and "lr" in search_space(TrainRecipe)


@dataclasses.dataclass(frozen=True)
class _WideSaliency(TrainRecipe):
    saliency: Annotated[Share, Uniform(0.5, 1.5)]  # Share stops at 1


@dataclasses.dataclass(frozen=True)
class _UnknownTarget(TrainRecipe):
    prefix_len: int
    target: Annotated[
        str, OneOf(FORGET_TARGETS, "forget target"), Choice(("uniform", "nosuch"))
    ] = "uniform"


@pytest.mark.parametrize(
    ("method", "recipe", "message"),
    [
        ("salun", _WideSaliency, "unlearn.salun.saliency: search space uniform [0.5, 1.5] "
         "reaches 1.5, which the field does not take (expected a finite number in (0, 1])"),
        ("pi_prefix", _UnknownTarget, "unlearn.pi_prefix.target: search space one of "
         "'uniform', 'nosuch' reaches 'nosuch'"),
    ],
)  # fmt: skip
def test_a_space_outside_its_field_is_refused_at_validate(
    monkeypatch: pytest.MonkeyPatch, method: str, recipe: type, message: str
) -> None:
    spec = dataclasses.replace(METHODS.get(method), recipe=recipe)
    monkeypatch.setitem(METHODS._entries, method, spec)  # the method's recipe, widened
    with pytest.raises(ParamError) as refused:
        check_params(PARAMS, devices=False)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 3}, "tune.seed: expected one of seeds [0], got 3"),
        ({"k": 10}, "tune.k: expected sizes 1 ≤ k < C = 10"),
        ({"sets": 6}, "tune.sets: 6 forget sets of size 1 asked, but only 5 of the 10"),
        ({"weights": {"forget": 1.0, "retain": -1.0, "mia": 0.0}}, "tune.weights.retain: "),
    ],
)
def test_a_tune_section_the_stage_cannot_run_is_refused_at_validate(
    change: dict, message: str
) -> None:
    params = copy.deepcopy(PARAMS)
    params["tune"].update(change)
    with pytest.raises(ValueError) as refused:
        check_params(params, devices=False)
    assert str(refused.value).startswith(message), str(refused.value)


def test_tuning_sets_are_seeded_and_none_is_scored_by_the_report() -> None:
    unlearn = unlearn_params(PARAMS["unlearn"])
    scored = scored_sets(10, unlearn, [0, 1, 2])
    sets = tuning_sets(10, 1, 2, scored, seed=0)
    assert len(set(sets)) == 2 and not set(sets) & scored
    assert sets == tuning_sets(10, 1, 2, scored, seed=0)
    free = [(c,) for c in range(10) if (c,) not in scored]
    assert sorted(tuning_sets(10, 1, len(free), scored, seed=5)) == free
    with pytest.raises(ValueError, match="tune.sets: "):
        tuning_sets(10, 1, len(free) + 1, scored, seed=0)


class _NoTest(Mapping[str, Split]):
    """A dataset's splits that raise the moment anything asks for the test split."""

    def __init__(self, splits: Mapping[str, Split]) -> None:
        self._splits = dict(splits)

    def __getitem__(self, name: str) -> Split:
        if name == "test":
            raise AssertionError("the search read the test split")
        return self._splits[name]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the search listed the splits")

    def __len__(self) -> int:
        return len(self._splits)


TUNE = TuneParams(trials=3, sets=1, k=1, seed=0, weights=ObjectiveWeights(1.0, 1.0, 1.0))
MIA = MiaParams(k=1, draws=None, batch_size=64, svc_c=3.0, cv_splits=2, cv_test_size=0.25)
RECIPES = {
    "retrain": TrainRecipe(epochs=1, batch_size=8, lr=1e-3),
    "finetune": TrainRecipe(epochs=1, batch_size=8, lr=1e-3),
    "ssd": SsdRecipe(batch_size=8, selection_weighting=1.0, dampening_constant=1.0),
}


def toy_search(dataset: PreparedDataset, tmp_path: Path, seed: int = 0) -> Outcome:
    """finetune and ssd (and pfm, untunable) searched on a 4-class toy set, class 0's set
    scored by the report."""
    plain = tmp_path / "plain.pt"
    save_model(make_model(num_classes=4, with_prompts=False), plain)
    tune = dataclasses.replace(TUNE, seed=seed)
    scoring = Scoring(MIA, "loss_auc", 64, "fp32", seed)
    sets = tuning_sets(4, 1, tune.sets, {(0,)}, seed)
    plans = [plan(m) for m in ("pfm", "finetune", "ssd")]
    bases = dict.fromkeys(RECIPES, plain)
    return tune_dataset(dataset, plans, RECIPES, bases, sets, tune, scoring, torch.device("cpu"), 1)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """The stage runs each search in a single-thread worker (``pfm.parallel``); so do
    these tests, where two threads on a busy machine are many times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return toy_search(toy_dataset(), tmp_path_factory.mktemp("search"))


def trial_record(outcome: Outcome) -> dict[str, list[tuple[dict, float]]]:
    return {m: [(t.params, t.value) for t in trials] for m, trials in outcome.studies.items()}


def test_the_search_is_reproducible_and_reads_no_test_split(
    searched: Outcome, tmp_path: Path
) -> None:
    """The same seed gives the same trials, values and best, bit for bit, on a dataset
    whose test split raises when read; another seed searches other recipes."""
    dataset, first = toy_dataset(), searched
    guarded = copy.copy(dataset)
    object.__setattr__(guarded, "splits", _NoTest(dataset.splits))
    again = toy_search(guarded, tmp_path)
    assert trial_record(first) == trial_record(again)
    assert first.sets == again.sets and not {(0,)} & set(first.sets)
    assert first.untunable == {"pfm": "its recipe declares no search space"}
    for method, trials in first.studies.items():
        assert len(trials) == TUNE.trials  # one budget for every method
        assert trials[0].params == {k: getattr(RECIPES[method], k) for k in trials[0].params}
        assert all(math.isfinite(t.value) and t.value >= 0 for t in trials)
        assert best_trial(trials).number == best_trial(again.studies[method]).number
    other = toy_search(dataset, tmp_path, seed=1)
    assert trial_record(other)["finetune"][1:] != trial_record(first)["finetune"][1:]


def test_unlearn_runs_the_file_the_search_wrote(searched: Outcome, tmp_path: Path) -> None:
    """``recipes: tuned``: the recipe stage unlearn builds has the best trial's searched
    fields and params' budget; ``recipes: hand``: params' recipe, from stage
    hand-recipes' file; a file of the other source is refused."""
    outcome = searched
    best = {m: best_trial(t) for m, t in outcome.studies.items()}
    studies = tmp_path / "digits.db"
    write_studies(studies, outcome.studies, outcome.untunable, {"trials": TUNE.trials})
    tuned = tmp_path / "digits.yaml"
    search = {m: summary(t) for m, t in outcome.studies.items()}
    write_tuned(tuned, {m: t.params for m, t in best.items()}, search, outcome.untunable)
    written = yaml.safe_load(tuned.read_text())
    assert written["untunable"] == outcome.untunable
    assert read_document(tuned)["recipes"] == {m: t.params for m, t in best.items()}

    params = {**copy.deepcopy(PARAMS), "recipes": "tuned"}
    _, recipe = read_params(applied(params, tuned)["unlearn"], "ssd")
    assert recipe.selection_weighting == best["ssd"].params["selection_weighting"]
    assert recipe.batch_size == PARAMS["unlearn"]["ssd"]["batch_size"]  # budget: params'
    _, recipe = read_params(applied(params, tuned)["unlearn"], "finetune")
    assert recipe.lr == best["finetune"].params["lr"]
    assert recipe.epochs == PARAMS["unlearn"]["finetune"]["epochs"]
    record = recipe_record(recipe, recipe_source(params))  # what its metrics file keeps
    assert record["recipe.source"] == "tuned" and record["recipe.lr"] == recipe.lr
    hand_params = {**params, "recipes": "hand"}
    with pytest.raises(ValueError, match="tuned recipes, but params say `recipes: hand`"):
        applied(hand_params, tuned)
    hand_file = tmp_path / "hand.yaml"
    write_hand(hand_file, hand_params)
    assert applied(hand_params, hand_file)["unlearn"] == PARAMS["unlearn"]
    assert set(read_document(hand_file)["recipes"]) == set(PARAMS["methods"])
    with pytest.raises(ValueError, match="hand recipes, but params say `recipes: tuned`"):
        applied(params, hand_file)
    with pytest.raises(FileNotFoundError, match="no recipes file"):
        applied(params, tmp_path / "absent.yaml")


def test_the_report_sets_each_tuned_recipe_beside_the_hand_one(
    searched: Outcome, tmp_path: Path
) -> None:
    """The report's recipe section, from the file stage tune writes: per tuned method the
    trials, both validation objectives and each searched field hand → tuned (the hand
    value is trial 0's: the recipe the search was given), the untunable ones with their
    reason."""
    outcome = searched
    best = {m: best_trial(t) for m, t in outcome.studies.items()}
    search = {m: summary(t) for m, t in outcome.studies.items()}
    write_tuned(tmp_path / "digits.yaml", {m: t.params for m, t in best.items()}, search,
                outcome.untunable)  # fmt: skip
    lines = recipe_lines(read_searches(tmp_path), "hand")
    assert lines[0] == "The rows above ran the **hand** recipes (params `recipes`)."
    row = next(line for line in lines if line.startswith("| finetune "))
    hand_lr = RECIPES["finetune"].lr  # the search's hand recipe
    assert search["finetune"]["hand"] == {"lr": hand_lr}
    assert (
        f"| {TUNE.trials} " in row
        and f"lr {brief(hand_lr)} → {brief(best['finetune'].params['lr'])}" in row
    )
    found = search["finetune"]
    assert f"{found['hand_objective']:.3f} → {found['best_objective']:.3f}" in row
    assert found["best_objective"] <= found["hand_objective"]  # trial 0 is among those searched
    assert lines[-1] == "Not tuned: `pfm` (its recipe declares no search space)."
    assert recipe_lines({}, "tuned") == [
        "The rows above ran the **tuned** recipes (params `recipes`)."
    ]


def test_the_studies_open_in_optuna_with_the_untunable_listed(
    searched: Outcome, tmp_path: Path
) -> None:
    outcome = searched
    path = tmp_path / "studies.db"
    write_studies(path, outcome.studies, outcome.untunable, {"trials": TUNE.trials})
    storage = f"sqlite:///{path}"
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names == {"pfm", "finetune", "ssd"}
    ssd = optuna.load_study(study_name="ssd", storage=storage)
    assert [t.params for t in ssd.trials] == [t.params for t in outcome.studies["ssd"]]
    assert ssd.best_value == best_trial(outcome.studies["ssd"]).value
    pfm = optuna.load_study(study_name="pfm", storage=storage)
    assert pfm.user_attrs["untunable"] == "its recipe declares no search space" and not pfm.trials


def test_recipes_is_a_top_level_switch_of_two_values() -> None:
    assert PARAMS["recipes"] == "hand"  # the default: the report's recipes are the hand ones
    with pytest.raises(ParamError, match="^recipes: expected one of 'hand', 'tuned'"):
        check_params({**PARAMS, "recipes": "best"}, devices=False)


def test_the_pi_prefix_target_is_searched_as_a_choice() -> None:
    space = search_space(PrefixRecipe)
    assert set(space) == {"lr", "target"} and set(space["target"].ends()) == set(FORGET_TARGETS)
