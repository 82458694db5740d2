"""Calibrating the recovery budget (``pfm.attacks.calibrate``): the choice rule on scripted
outcomes with a known answer, each capability attacked on its own family's never-seen
reference with its knob (a trained one's lr, the prototype attack's weight) at each
value of its grid, the params block read back as params, and one real run of the command on tiny
models that reads the validation split and never the test split. Also the attack's one
pre-attack retained pass per model and capability, whatever the number of m."""

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pfm.attacks import calibrate, harness
from pfm.attacks.calibrate import Trial, choose, main, params_block, reference_targets
from pfm.attacks.capabilities import CAPABILITIES
from pfm.attacks.harness import Forward, Outcome
from pfm.attacks.probes import AttackData
from pfm.attacks.protocol import DatasetKnobs
from pfm.attacks.recovery import attack_every_shot, recover
from pfm.attacks.targets import Target
from pfm.config import from_mapping
from pfm.data import save_prepared
from pfm.data.prepared import PreparedDataset, Split
from tests.conftest import make_model
from tests.test_attacks import (
    DATA,
    FORGET,
    SPLITS,
    params,
    save_unlearned,
    stage_params,
)

CPU_ARGS = ("--workers", "1")


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: one thread is fastest on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def scripted(acc: float, collapsed: bool = False) -> Outcome:
    return Outcome(
        curve=[(0, 0.0), (4, acc)], acc=acc, oracle_acc=acc, pre_retain_acc=0.9,
        retain_acc=0.3 if collapsed else 0.85, collapsed=collapsed, relearn_steps=4,
        relearned=acc >= 0.5, retain_to_recovered=0.0, noise_to_recovered=0.0,
        ood_to_recovered=None,
    )  # fmt: skip


# (capability, knob value) → per reference draw: (acc, collapsed) at every m
SCRIPT = {
    ("head", 0.001): [(0.2, False), (0.2, False)],
    ("head", 0.01): [(0.5, False), (0.7, False)],  # 0.6: ties with 0.03, the smaller wins
    ("head", 0.03): [(0.6, False), (0.6, False)],
    ("head", 0.1): [(1.0, False), (0.9, True)],  # the best mean, but one draw collapsed
    ("prompt", 0.001): [(0.1, True), (0.1, False)],
    ("prompt", 0.01): [(0.3, False), (0.4, True)],  # every lr collapses some draw: none
    ("prompt", 0.03): [(0.5, True), (0.5, True)],
    ("prompt", 0.1): [(0.9, True), (0.9, True)],
    ("prototype", 0.5): [(0.4, False), (0.6, False)],
    ("prototype", 1.0): [(1.0, True), (1.0, True)],  # the class as a sink: collapsed
}
RATES = (0.001, 0.01, 0.03, 0.1)
WEIGHTS = (0.5, 1.0)


def test_the_chosen_rate_is_the_best_that_collapsed_no_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scripted attacks with a known answer: head → 0.01 (0.1 collapsed a draw; 0.03
    ties and is larger), prompt → none, prototype → 0.5 (1.0 collapsed); each capability
    attacks its own family's reference (the prototype: both) at each value of its knob's
    grid, a trained one's steps unchanged, scored on what it is given."""
    targets = {
        method: [Target(Path(f"{method}/k1-{c}.pt"), (c,), 0, method == "retrain_prompt")
                 for c in (1, 2)]
        for method in ("retrain", "retrain_prompt")
    }  # fmt: skip
    data = AttackData(DATA.splits["train"], DATA.splits["val"])
    calls = []

    def attack(path, classes, seed, capability, given, tuned, device):  # noqa: ANN001, ANN202
        assert given is data and seed == 0
        if capability == "prototype":
            value = tuned.prototype_weight
            assert tuned.budget == recovery.budget
        else:
            value = tuned.budget[capability].lr
            assert tuned.budget[capability].steps == 4  # only the rate moves
            assert tuned.prototype_weight == recovery.prototype_weight
        calls.append((capability, value, path.parent.name))
        acc, collapsed = SCRIPT[capability, value][classes[0] - 1]
        return {m: scripted(acc, collapsed) for m in tuned.shots}

    monkeypatch.setattr(calibrate, "attack_saved", attack)
    recovery = params(capabilities=("prompt", "head", "prototype"), shots=(0, 5))
    grids = {"lr": RATES, "prototype_weight": WEIGHTS}
    trials = calibrate.calibrate(targets, data, recovery, grids, 1, torch.device("cpu"))
    assert sorted(calls) == sorted([
        *((cap, lr, "retrain_prompt" if cap == "prompt" else "retrain")
          for cap in ("prompt", "head") for lr in RATES for _ in (1, 2)),
        *(("prototype", w, method) for w in WEIGHTS
          for method in ("retrain", "retrain_prompt") for _ in (1, 2)),
    ])  # fmt: skip
    by_key = {(t.capability, t.value): t for t in trials}
    assert set(by_key) == set(SCRIPT)
    assert by_key["head", 0.01].acc == pytest.approx(0.6)
    assert len(by_key["head", 0.01].outcomes) == 4  # 2 draws × 2 m
    assert len(by_key["prototype", 0.5].outcomes) == 8  # both families' 2 draws × 2 m
    assert by_key["head", 0.1].collapsed == 0.5
    assert choose(trials) == {"head": 0.01, "prompt": None, "prototype": 0.5}


def test_choose_breaks_ties_toward_the_smaller_rate_in_any_order() -> None:
    trials = [Trial("head", lr, (scripted(0.5),)) for lr in (0.1, 0.003, 0.03)]
    assert choose(trials) == {"head": 0.003}
    assert choose([*trials, Trial("head", 0.3, (scripted(0.6),))]) == {"head": 0.3}


def test_the_params_block_reads_back_as_the_datasets_own_knobs() -> None:
    recovery = params()
    chosen = {"head": 1e-05, "prompt": None, "head_lora": 0.03, "prototype": 0.5}
    block = yaml.safe_load(params_block(recovery, chosen, "fashion-mnist"))
    (own,) = block["by_dataset"].values()
    assert set(block["by_dataset"]) == {"fashion-mnist"}
    assert own["prototype_weight"] == 0.5
    assert own["budget"]["head"] == {"steps": 4, "lr": 1e-05}  # a float, not the string "1e-05"
    assert own["budget"]["head_lora"] == {"steps": 4, "lr": 0.03}
    assert set(own["budget"]) == {"head", "head_lora"}  # none chosen for prompt: stays shared
    knobs = from_mapping(DatasetKnobs, own, "attacks.recovery.by_dataset.fashion-mnist")
    read = replace(recovery, by_dataset={"fashion-mnist": knobs}).for_dataset("fashion-mnist")
    assert read.budget["head"].lr == 1e-05 and read.prototype_weight == 0.5
    assert read.budget["prompt"] == recovery.budget["prompt"]
    assert "prototype_weight" not in params_block(recovery, {"prototype": None}, "digits")


def test_the_references_are_the_never_seen_models_of_each_family(tmp_path: Path) -> None:
    models, references = tmp_path / "unlearned", tmp_path / "ref"
    save_unlearned(models / "retrain/seed0", "retrain", {FORGET: make_model(with_prompts=False)})
    save_unlearned(references / "seed0", "retrain_prompt", {FORGET: make_model().forget(FORGET)})
    found = reference_targets(models, references, 0, ("retrain", "retrain_prompt"), (1,), 1)
    assert {m: [(t.path.parent.parent.name, t.classes, t.prompted) for t in ts]
            for m, ts in found.items()} == {
        "retrain": [("retrain", FORGET, False)], "retrain_prompt": [("ref", FORGET, True)]
    }  # fmt: skip
    save_unlearned(references / "seed0", "retrain_prompt", {FORGET: make_model(with_prompts=False)})
    with pytest.raises(ValueError, match="other family"):
        reference_targets(models, references, 0, ("retrain_prompt",), (1,), 1)


def poisoned(dataset: PreparedDataset, split: str) -> PreparedDataset:
    """``dataset`` with ``split``'s images replaced by noise and its labels shifted."""
    old = dataset.splits[split]
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, old.inputs.shape, dtype=np.uint8)
    bad = Split(images, (old.labels + 1) % dataset.num_classes)
    return PreparedDataset(dataset.name, dataset.class_names, {**dataset.splits, split: bad})


def test_the_command_reads_validation_and_never_test(tmp_path: Path) -> None:
    """A real run on tiny models (the smaller values leave them uncollapsed, so a value is
    chosen); poisoning the test split changes nothing it writes,
    poisoning the validation split does."""
    settings = stage_params(["pfm", "retrain"])
    recovery = settings["attacks"]["recovery"]  # one capability per family
    recovery.update(k=[1], capabilities=["prompt", "head", "prototype"], collapse_fraction=0.01)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    save_unlearned(tmp_path / "unlearned/retrain/seed0", "retrain",
                   {FORGET: make_model(with_prompts=False)})  # fmt: skip
    save_unlearned(tmp_path / "ref/seed0", "retrain_prompt", {FORGET: make_model().forget(FORGET)})
    outputs = {}
    for name, dataset in (
        ("clean", DATA), ("test", poisoned(DATA, "test")), ("val", poisoned(DATA, "val"))
    ):  # fmt: skip
        save_prepared(dataset, tmp_path / name)
        out = tmp_path / f"{name}.json"
        main([
            "--data", str(tmp_path / name), "--models", str(tmp_path / "unlearned"),
            "--prompt-reference", str(tmp_path / "ref"), "--params", str(tmp_path / "params.yaml"),
            "--rates", "0.001", "0.003", "--weights", "0.001", "1", "--out", str(out), *CPU_ARGS,
        ])  # fmt: skip
        outputs[name] = json.loads(out.read_text())
    clean = outputs["clean"]
    assert clean["shots"] == [0, 1]  # 0 and the largest of attacks.recovery.shots
    assert {(t["capability"], t["knob"], t["value"]) for t in clean["trials"]} == {
        *((c, "lr", lr) for c in ("prompt", "head") for lr in (0.001, 0.003)),
        *(("prototype", "prototype_weight", w) for w in (0.001, 1.0)),
    }
    trained = [t for t in clean["trials"] if t["knob"] == "lr"]
    assert all(t["runs"] == 2 for t in trained)  # one draw × two m
    prototype = [t for t in clean["trials"] if t["knob"] == "prototype_weight"]
    assert all(t["runs"] == 2 for t in prototype)  # m = 1 only, on both families' draw
    assert set(clean["budget"]) == {"prompt", "head"} and all(clean["budget"].values())
    assert "prototype_weight" in clean
    assert outputs["test"] == clean
    assert outputs["val"] != clean


@pytest.mark.parametrize("capability", ["prompt_head", "head", "prototype"])
def test_the_scoring_sets_are_built_once_per_model_and_change_nothing(
    capability: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``attack_every_shot`` builds the copy's scoring sets once, not once per m: the
    retained accuracy before the attack is one pass, and where only the head changes the
    frozen encoder reads the test split and the probes once; every number equals that of
    the attack run alone at each m."""
    model = make_model(with_prompts=capability == "prompt_head").forget(FORGET)
    recovery = params(shots=(0, 1, 5), steps=2)
    shots = [m for m in recovery.shots if CAPABILITIES.get(capability).applies(m)]
    passes, encoded = [], []
    accuracy = Forward.accuracy
    monkeypatch.setattr(Forward, "accuracy", lambda f, d: passes.append(1) or accuracy(f, d))
    head_inputs = harness.head_inputs
    monkeypatch.setattr(
        harness, "head_inputs", lambda m, x, g: encoded.append(len(x)) or head_inputs(m, x, g)
    )
    alone = {m: recover(model, SPLITS, FORGET, m, capability, recovery, 0).outcome()
             for m in shots}  # fmt: skip
    per_m, rows_alone = len(passes), sum(encoded)
    passes.clear()
    encoded.clear()
    assert attack_every_shot(model, SPLITS, FORGET, capability, recovery, 0) == alone
    assert len(passes) == per_m - (len(shots) - 1)
    if capability == "prompt_head":
        assert rows_alone == 0 and not encoded  # nothing cached: no encoder pass up front
    else:
        test, probes = len(SPLITS.test), recovery.ood_samples  # the noise probe; no OOD set
        sample = min(recovery.curve_samples, int(np.isin(SPLITS.test.labels, FORGET).sum()))
        assert rows_alone - sum(encoded) == (len(shots) - 1) * (test + sample + probes)
