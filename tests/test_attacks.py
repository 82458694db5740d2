"""Attacks: the membership-inference maths on known answers, each attack's known-answer
behaviour on tiny models (it finds a leak where there is one, and nothing where there is
none; the recovery attack's reference is not rigged), the recovery attack's invariants
(equal capability for a model and its reference, the budget's end as the reported step,
collapse, the specificity probes), and the attack stage's contract. The protocol's own
guarantees (no forgotten-class label at m = 0, the prototype attack, every registered
capability) are in tests/test_recovery_protocol.py."""

import copy
import json
import math
import runpy
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pfm.attacks import CAPABILITIES, MIA_VARIANTS, MiaParams, RecoveryParams, mia, suite
from pfm.attacks.capabilities import Budget
from pfm.attacks.harness import Forward, Outcome, head_inputs, relearn_time
from pfm.attacks.mia import (
    MembershipData,
    Outputs,
    balance,
    logreg_accuracy,
    loss_auc,
    outputs_from_logits,
    per_sample,
    svc_non_member_rate,
)
from pfm.attacks.mia import (
    attack as mia_attack,
)
from pfm.attacks.probes import (
    AttackData,
    draw_shots,
    noise_probe,
    ood_candidates,
    ood_dataset,
    ood_inputs,
    ood_probe,
    random_inputs,
)
from pfm.attacks.protocol import DatasetKnobs
from pfm.attacks.recovery import DrawResult, attack_saved, mean_curve, recover, summarise
from pfm.attacks.targets import (
    Target,
    distinct_attacks,
    recovery_runs,
    with_prompt_references,
)
from pfm.batches import SplitTensors
from pfm.config import from_mapping
from pfm.data import save_prepared
from pfm.data.prepared import PreparedDataset, Split
from pfm.draws import matching_draw, reference_draws, select_draws
from pfm.evaluate import forget_sets, pool
from pfm.losses import plain_objective, prompt_objective
from pfm.models.checkpoint import save_model
from pfm.models.prompted import PromptedClassifier
from pfm.references import never_seen
from pfm.reporting.aggregate import read_relearn_curves
from pfm.train import TrainConfig, train
from pfm.unlearn.base import PROMPT_REFERENCE
from pfm.unlearn.data import class_slice
from pfm.unlearn.manifest import draw_entry, draw_file, write_manifest
from tests.conftest import make_model, toy_dataset

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
CPU = torch.device("cpu")
MIA = MiaParams(k=1, draws=None, batch_size=64, svc_c=3.0, cv_splits=5, cv_test_size=0.1)
TRAINED = ("prompt", "prompt_head", "head", "head_lora")  # the capabilities with a budget
QUICK = RecoveryParams(
    k=(1,), draws=1, shots=(0, 1), capabilities=(*TRAINED, "prototype"),
    budget=dict.fromkeys(TRAINED, Budget(4, 0.01)), eval_every=2, curve_samples=64,
    collapse_fraction=0.8, prototype_weight=1.0, relearn_threshold=0.5, anchor_shots=1,
    noise_inputs=2, prompt_init="normal", ood_datasets={}, ood_samples=8, batch_size=64,
)  # fmt: skip
FORGET = (1,)  # forgotten by the plain models' tests
HIDDEN = (2,)  # the class whose prompt deletion forgets it in the toy prompt model
FIELDS = (
    "acc", "reference_acc", "residual", "oracle_acc", "reference_oracle_acc", "pre_retain_acc",
    "retain_acc", "reference_pre_retain_acc", "reference_retain_acc", "collapsed",
    "reference_collapsed", "retain_to_recovered", "noise_to_recovered", "ood_to_recovered",
    "reference_retain_to_recovered", "reference_noise_to_recovered",
    "reference_ood_to_recovered", "relearn_steps", "relearned",
)  # fmt: skip


def toy_with_test(per_class: int = 8) -> PreparedDataset:
    """The conftest toy task with test and validation splits as large as its train split
    (the toy's own have 3 and 2 a class: too few for a 5-split attacker, and a validation
    curve that coarse picks the adversary's step by chance)."""
    data = toy_dataset(num_classes=4, per_class=per_class)
    test = toy_dataset(num_classes=4, per_class=per_class, seed=1).splits["train"]
    val = toy_dataset(num_classes=4, per_class=per_class, seed=2).splits["train"]
    return PreparedDataset(data.name, data.class_names, {**data.splits, "val": val, "test": test})


DATA = toy_with_test()
SPLITS = AttackData(DATA.splits["train"], DATA.splits["test"])


def params(steps: int = 4, lr: float = 0.01, **changes: object) -> RecoveryParams:
    """QUICK with ``changes``, every trained capability on a budget of ``steps`` at ``lr``."""
    budget = dict.fromkeys(TRAINED, Budget(steps, lr))
    return RecoveryParams(**{**QUICK.__dict__, "budget": budget, **changes})


def margins(values: np.ndarray) -> MembershipData | object:
    """Outputs of logits whose true class (0 of 4) leads the others by ``values``."""
    logits = torch.zeros(len(values), 4, dtype=torch.float64)
    logits[:, 0] = torch.as_tensor(values)
    return outputs_from_logits(logits, torch.zeros(len(values), dtype=torch.long))


def membership(leaky: bool, seed: int = 0) -> MembershipData:
    """Synthetic attack data: the shadow (retained) classes always show the train/test
    gap of an over-fitted model (margin 6 vs 1); the forgotten members show it too when
    ``leaky``, and look like non-members otherwise."""
    rng = np.random.default_rng(seed)
    member_margin = 6.0 if leaky else 1.0
    return MembershipData(
        members=margins(rng.normal(member_margin, 0.5, 120)),
        non_members=margins(rng.normal(1.0, 0.5, 60)),
        shadow_members=margins(rng.normal(6.0, 0.5, 300)),
        shadow_non_members=margins(rng.normal(1.0, 0.5, 150)),
    )


# +1: a leak raises the variant's value (an attacker's score); −1: it lowers it (efficacy).
LEAK_DIRECTION = {"loss_auc": 1, "efficacy": -1, "efficacy_entropy": -1, "loss_logreg": 1}


def noise_split(n: int, seed: int) -> Split:
    """Random images with random labels: only memorisation can fit them."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    return Split(images, rng.integers(0, 4, n).astype(np.int64))


def fit_plain(split: Split, epochs: int, lr: float = 1e-2) -> PromptedClassifier:
    model = make_model(with_prompts=False)
    data = SplitTensors(split, model.input_size, CPU)
    config = TrainConfig(epochs=epochs, batch_size=8, lr=lr, eval_modes=())
    train(model, plain_objective, data, data, config, 0, None, "")
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    """These models are tiny: one thread each is fastest on a shared 2-core machine
    (two threads per process oversubscribe it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- membership inference: the maths -----------------------------------------------------


def test_loss_auc_known_answers() -> None:
    low, high = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0])
    assert loss_auc(low, high) == 1.0  # every member has a lower loss: perfect attacker
    assert loss_auc(high, low) == 0.0
    assert loss_auc(np.ones(5), np.ones(7)) == 0.5  # a constant score cannot rank


def test_loss_auc_is_the_pairwise_probability_members_have_lower_loss() -> None:
    rng = np.random.default_rng(0)
    members, non_members = rng.integers(0, 5, 40) * 1.0, rng.integers(0, 5, 30) * 1.0  # ties
    pairs = members[:, None] - non_members[None, :]
    assert math.isclose(
        loss_auc(members, non_members), (pairs < 0).mean() + 0.5 * (pairs == 0).mean()
    )


def test_outputs_from_logits_known_values() -> None:
    out = outputs_from_logits(torch.zeros(2, 4), torch.tensor([0, 3]))
    np.testing.assert_allclose(out.loss, math.log(4))
    np.testing.assert_allclose(out.confidence, 0.25)
    np.testing.assert_allclose(out.entropy, math.log(4))
    sure = torch.tensor([[50.0, 0.0, 0.0], [torch.finfo(torch.float32).min, 0.0, 0.0]])
    out = outputs_from_logits(sure, torch.tensor([0, 0]))  # a masked logit is finite, not NaN
    assert out.loss[0] < 1e-12 and out.confidence[0] == pytest.approx(1.0)
    assert out.entropy[0] < 1e-12 and out.entropy[1] == pytest.approx(math.log(2))
    assert np.isfinite(out.loss).all() and out.confidence[1] == 0.0


def test_balance_cuts_both_sides_to_the_smaller_seeded() -> None:
    a, b = np.arange(10.0), np.arange(100.0, 104.0)
    cut_a, cut_b = balance(a, b, np.random.default_rng(0))
    assert len(cut_a) == len(cut_b) == 4 and set(cut_a) <= set(a) and list(cut_b) == list(b)
    again, _ = balance(a, b, np.random.default_rng(0))
    assert list(again) == list(cut_a)


def test_svc_rate_known_answers() -> None:
    rng = np.random.default_rng(0)
    members, non_members = rng.normal(0.95, 0.01, 200), rng.normal(0.3, 0.05, 100)
    assert svc_non_member_rate(members, non_members, rng.normal(0.95, 0.01, 50), 3.0, 0) == 0.0
    assert svc_non_member_rate(members, non_members, rng.normal(0.3, 0.05, 50), 3.0, 0) == 1.0


def test_logreg_accuracy_known_answers() -> None:
    rng = np.random.default_rng(0)
    assert logreg_accuracy(rng.normal(0, 0.1, 200), rng.normal(3, 0.1, 100), 10, 0.1, 0) == 1.0
    # the same distribution: 10 folds of 20 held-out samples, std of the mean ≈ 0.035
    same = logreg_accuracy(rng.normal(0, 1, 200), rng.normal(0, 1, 200), 10, 0.1, 0)
    assert abs(same - 0.5) < 0.15
    with pytest.raises(ValueError, match="5 samples per side are too few"):
        logreg_accuracy(np.zeros(5), np.ones(5), 10, 0.1, 0)  # a 10% fold holds 1 of 10
    assert 0.0 <= logreg_accuracy(np.zeros(5), np.ones(5), 10, 0.2, 0) <= 1.0


@pytest.mark.parametrize("name", list(MIA_VARIANTS))
def test_every_variant_tells_a_leaky_model_from_a_clean_one(name: str) -> None:
    score = MIA_VARIANTS.get(name).score
    leaky, clean = score(membership(True), MIA, 0), score(membership(False), MIA, 0)
    assert min(leaky, clean) >= 0.0 and max(leaky, clean) <= 1.0
    assert LEAK_DIRECTION[name] * (leaky - clean) > 0.4, (leaky, clean)
    assert score(membership(True), MIA, 0) == leaky  # seed-deterministic


# --- membership inference: known answers on models --------------------------------------


def test_loss_auc_finds_an_overfitted_models_members_and_not_unseen_samples() -> None:
    members, non_members, unseen = noise_split(24, 1), noise_split(64, 2), noise_split(64, 3)
    model = fit_plain(members, epochs=15)  # memorises 24 random labels

    def losses(split: Split) -> np.ndarray:
        return per_sample(model, SplitTensors(split, model.input_size, CPU), 64).loss

    assert loss_auc(losses(members), losses(non_members)) > 0.8
    # two sets it never saw: under no signal, AUC of 64 vs 64 has std
    # sqrt((n1 + n0 + 1) / (12 n1 n0)) = 0.051; 0.15 is three of them
    assert abs(loss_auc(losses(unseen), losses(non_members)) - 0.5) < 0.15


@pytest.fixture(scope="module")
def plain() -> PromptedClassifier:
    """A plain classifier that has learnt the toy task."""
    return fit_plain(DATA.splits["train"], epochs=6)


def test_mia_attack_reports_every_variant_seeded(plain: PromptedClassifier) -> None:
    train_split, test_split = DATA.splits["train"], DATA.splits["test"]
    metrics = mia_attack(plain, train_split, test_split, FORGET, MIA, 0)
    assert set(metrics) == {f"mia.{name}" for name in MIA_VARIANTS}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert mia_attack(plain, train_split, test_split, FORGET, MIA, 0) == metrics


def test_only_the_shadow_rows_the_attacker_fits_on_are_forwarded(
    plain: PromptedClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shadow sets are balanced before the forward: every variant's value is the one
    the whole sets give, and the larger side costs no more forwards than the smaller."""
    train_split = DATA.splits["train"]  # 8 a class
    test_split = toy_dataset(num_classes=4, per_class=6, seed=1).splits["train"]

    def whole(split: Split, keep: bool) -> Outputs:
        part = SplitTensors(class_slice(split, FORGET, keep), plain.input_size, CPU)
        return per_sample(plain, part, 64)

    sets = [whole(s, keep) for keep in (True, False) for s in (train_split, test_split)]
    everything = MembershipData(sets[0], sets[1], sets[2], sets[3])
    expected = {f"mia.{n}": MIA_VARIANTS.get(n).score(everything, MIA, 0) for n in MIA_VARIANTS}
    forwarded: list[int] = []

    def counted(model: PromptedClassifier, data: SplitTensors, batch_size: int) -> Outputs:
        forwarded.append(len(data))
        return per_sample(model, data, batch_size)

    monkeypatch.setattr(mia, "per_sample", counted)
    assert mia_attack(plain, train_split, test_split, FORGET, MIA, 0) == expected
    assert forwarded == [8, 6, 18, 18]  # members, non-members, 24 → 18 shadow members, 18
    forwarded.clear()
    auc_only = mia.membership_data(plain, train_split, test_split, FORGET, 64, None)
    assert forwarded == [8, 6] and auc_only.shadow_members is None
    with pytest.raises(ValueError, match="shadow sets"):
        MIA_VARIANTS.get("efficacy").score(auc_only, MIA, 0)


# --- draws -------------------------------------------------------------------------------


def test_draw_selection_matching_and_pooling() -> None:
    manifest = {"method": "m", "draws": [
        {"k": 1, "classes": [3], "model": "a"}, {"k": 2, "classes": [0, 2], "model": "b"},
        {"k": 1, "classes": [1], "model": "c"},
    ]}  # fmt: skip
    assert [d["model"] for d in select_draws(manifest, 1)] == ["a", "c"]
    assert [d["model"] for d in select_draws(manifest, 1, limit=1)] == ["a"]
    with pytest.raises(ValueError, match=r"no draw with k=5 \(found k in \[1, 2\]\)"):
        select_draws(manifest, 5)
    assert matching_draw(manifest, [2, 0])["model"] == "b"
    with pytest.raises(ValueError, match="no draw forgetting classes"):
        matching_draw(manifest, [2])
    pooled = pool([{"x": 1.0, "y": 0.0}, {"x": 3.0}])
    assert pooled == {"x.mean": 2.0, "x.std": 1.0}  # only keys every draw has


# --- prompt recovery: fixtures ---------------------------------------------------------

PROMPT_RECIPE = TrainConfig(epochs=8, batch_size=8, lr=3e-3, prompt_lr=0.03, eval_modes=())


@pytest.fixture(scope="module")
def prompted() -> PromptedClassifier:
    """A prompt model that has learnt the toy task; deleting the prompt of HIDDEN forgets
    that class (its test accuracy drops to 0) and leaves the others."""
    model = make_model()
    data = SplitTensors(DATA.splits["train"], model.input_size, CPU)
    objective = prompt_objective(PROMPT_RECIPE.kl_weight)
    train(model, objective, data, data, PROMPT_RECIPE, 0, None, "")
    return model.eval()


@pytest.fixture(scope="module")
def never_prompted(prompted: PromptedClassifier) -> PromptedClassifier:
    """``retrain_prompt`` of HIDDEN: the prompt model's spec, recipe and seed, trained
    without the class and without its prompt."""
    model, _ = never_seen(prompted.spec, HIDDEN, DATA.splits["train"], PROMPT_RECIPE, 0, CPU)
    return model


@pytest.fixture(scope="module")
def never_plain() -> PromptedClassifier:
    """``retrain`` of FORGET: a plain classifier trained without class 1."""
    return fit_plain(class_slice(DATA.splits["train"], FORGET, False), epochs=6)


def forgotten_accuracy(model: PromptedClassifier, classes: tuple[int, ...]) -> float:
    forward = Forward(model, False, 64, torch.Generator())
    return forward.accuracy(forward.batches(class_slice(DATA.splits["test"], classes, True)))


# --- prompt recovery: capabilities -----------------------------------------------------


def test_with_prompt_adds_a_row_in_fresh_storage() -> None:
    model = make_model()
    forgotten = model.forget(FORGET)
    row = torch.full(model.prompts.shape[1:], 0.5)
    back = forgotten.with_prompt(1, row)
    assert back.bank_classes == [0, 1, 2, 3] and forgotten.bank_classes == [0, 2, 3]
    assert torch.equal(back.prompts[back.prompt_classes == 1][0], row)
    assert back.prompts.data_ptr() != forgotten.prompts.data_ptr()
    assert back.head is forgotten.head  # shares everything else, as forget does
    with pytest.raises(ValueError, match="already has a prompt"):
        back.with_prompt(1, row)
    with pytest.raises(ValueError, match="must have shape"):
        forgotten.with_prompt(1, row[None])
    with pytest.raises(ValueError, match="out of range"):
        forgotten.with_prompt(4, row)


def test_draw_shots_are_nested_and_seeded() -> None:
    split = DATA.splits["train"]
    one, five = draw_shots(split, FORGET, 1, 0), draw_shots(split, FORGET, 5, 0)
    assert list(one.labels) == [1] and list(five.labels) == [1] * 5
    assert np.array_equal(one.inputs[0], five.inputs[0])  # m = 1 ⊂ m = 5
    assert np.array_equal(draw_shots(split, FORGET, 5, 0).inputs, five.inputs)
    with pytest.raises(ValueError, match="fewer than m = 99"):
        draw_shots(split, FORGET, 99, 0)


def test_capabilities_fit_their_model_family() -> None:
    fit = {c: CAPABILITIES.get(c).fits for c in CAPABILITIES}
    assert [c for c in CAPABILITIES if fit[c](True)] == ["prompt", "prompt_head", "prototype"]
    assert [c for c in CAPABILITIES if fit[c](False)] == ["head", "head_lora", "prototype"]
    chosen = params(capabilities=("head", "prompt_head"))
    assert chosen.capabilities_for(True) == ("prompt_head",)
    assert chosen.capabilities_for(False) == ("head",)
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="does not apply to a prompt-free model"):
        CAPABILITIES.get("prompt_head").prepare(
            make_model(with_prompts=False), FORGET, "normal", generator
        )
    with pytest.raises(ValueError, match="does not apply to a prompt model"):
        CAPABILITIES.get("head").prepare(make_model(), FORGET, "normal", generator)


def trained_set(
    model: PromptedClassifier, classes: tuple[int, ...], capability: str
) -> dict[str, list[bool] | None]:
    """What ``capability`` trains in ``model``: parameter name → its row mask."""
    _, trained = CAPABILITIES.get(capability).prepare(model, classes, "normal", torch.Generator())
    return {t.name: None if t.rows is None else t.rows.tolist() for t in trained}


@pytest.mark.parametrize("capability", ["prompt", "prompt_head"])
def test_a_prompt_model_and_its_reference_train_the_same_parameters(
    capability: str, prompted: PromptedClassifier, never_prompted: PromptedClassifier
) -> None:
    """(c) Equal capability: the unlearned prompt model and ``retrain_prompt`` expose the
    same parameters with the same masks — the fresh row of the class (appended after the
    bank's 0, 1, 3) and, under ``prompt_head``, the class's head row, nothing else."""
    attacked = trained_set(prompted.forget(HIDDEN), HIDDEN, capability)
    assert attacked == trained_set(never_prompted, HIDDEN, capability)
    expected: dict[str, list[bool] | None] = {"prompts": [False, False, False, True]}
    if capability == "prompt_head":
        expected |= dict.fromkeys(("head.weight", "head.bias"), [False, False, True, False])
    assert attacked == expected


@pytest.mark.parametrize("capability", ["head", "head_lora"])
def test_a_plain_model_and_retrain_train_the_same_parameters(
    capability: str, plain: PromptedClassifier, never_plain: PromptedClassifier
) -> None:
    """(c) for the plain family: the same names, every element of each."""
    attacked = trained_set(plain, FORGET, capability)
    assert attacked == trained_set(never_plain, FORGET, capability)
    adapters = {name for name in attacked if "lora_" in name}
    assert set(attacked) == {"head.weight", "head.bias"} | adapters
    assert bool(adapters) == (capability == "head_lora")
    assert all(rows is None for rows in attacked.values())


def changed_keys(before: dict[str, torch.Tensor], model: PromptedClassifier) -> set[str]:
    after = model.state_dict()
    return {k for k, v in before.items() if k in after and not torch.equal(after[k], v)}


@pytest.mark.parametrize("capability", ["prompt", "prompt_head"])
def test_recovery_of_a_prompt_model_moves_only_its_capability(
    capability: str, prompted: PromptedClassifier
) -> None:
    """At the budget's end every parameter outside the capability is bitwise what it
    was — the other prompt rows and the other classes' head rows too — and the fresh row
    moved from its seeded N(0, 1) start by at most about lr a step (Adam)."""
    model = prompted.forget(HIDDEN)
    before = snapshot(model)
    result = recover(model, SPLITS, HIDDEN, 1, capability, params(lr=0.3), 0)
    assert changed_keys(before, model) == set()  # the input is left intact
    moved_rows = {"head.weight", "head.bias"} if capability == "prompt_head" else set()
    assert changed_keys(before, result.model) - {"prompts", "prompt_classes"} == moved_rows
    others = [c for c in range(4) if c not in HIDDEN]
    for name in ("head.weight", "head.bias"):
        assert torch.equal(result.model.state_dict()[name][others], before[name][others])
    fresh = result.model.prompt_classes == HIDDEN[0]
    assert torch.equal(result.model.prompts[~fresh].detach(), model.prompts.detach())
    start = torch.randn(model.prompts.shape[1:], generator=torch.Generator().manual_seed(0))
    moved = (result.model.prompts[fresh][0].detach() - start).abs().max()
    assert 0 < moved <= 4 * 0.3 * 1.01  # 4 steps at lr 0.3
    assert [s for s, _ in result.curve] == [0, 2, 4]


@pytest.mark.parametrize("capability", ["head", "head_lora"])
def test_recovery_of_a_plain_model_moves_only_its_capability(
    capability: str, never_plain: PromptedClassifier
) -> None:
    before = snapshot(never_plain)
    result = recover(never_plain, SPLITS, FORGET, 1, capability, params(lr=0.05), 0)
    changed = changed_keys(before, result.model)
    adapters = {k for k in changed if "lora_" in k}
    assert changed == {"head.weight", "head.bias"} | adapters
    assert bool(adapters) == (capability == "head_lora")


def test_head_inputs_are_what_the_head_reads(plain: PromptedClassifier) -> None:
    """The head-only attack trains on cached head inputs: the head applied to them must
    give the model's own logits."""
    x, _ = next(SplitTensors(DATA.splits["test"], plain.input_size, CPU).batches(16))
    with torch.no_grad():
        torch.testing.assert_close(plain.head(head_inputs(plain, x, torch.Generator())), plain(x))


def test_recovery_is_deterministic_by_seed() -> None:
    model = make_model().forget(FORGET)
    args = (SPLITS, FORGET, 0, "prompt", params(steps=2))
    first, again, other = (
        recover(model, *args, 0),
        recover(model, *args, 0),
        recover(model, *args, 1),
    )
    assert first.outcome() == again.outcome()
    assert torch.equal(first.model.prompts, again.model.prompts)
    assert not torch.equal(first.model.prompts, other.model.prompts)


def test_a_prompt_left_in_the_model_is_where_the_attack_starts() -> None:
    """A "forgotten" model that kept the class's prompt row hands its bytes to the
    adversary, who starts from them; after proper deletion only a fresh random row is
    left. One Adam step moves each element by at most about lr."""
    trained = make_model()
    one_step = params(steps=1, eval_every=1)
    kept = recover(trained, SPLITS, FORGET, 1, "prompt", one_step, 0)
    deleted = recover(trained.forget(FORGET), SPLITS, FORGET, 1, "prompt", one_step, 0)
    start_kept = kept.model.prompts[kept.model.prompt_classes == 1]
    start_deleted = deleted.model.prompts[deleted.model.prompt_classes == 1]
    assert (start_kept - trained.prompts[1]).abs().max() <= 0.01 * 1.01  # one step at lr
    assert (start_deleted - trained.prompts[1]).abs().max() > 1.0


@pytest.mark.parametrize("m", [0, 1])
def test_a_zeroed_prompt_is_what_deletion_plus_a_zero_start_is(m: int) -> None:
    """Why the attack cannot tell a zeroed prompt from a deleted one: a row of zeros holds
    no byte of the prompt it replaced, and everything else (adapters, head) is the same
    in both, so the adversary's starting point is the same: attacking the zeroed model
    equals attacking the deleted model with a zero-initialised fresh row, bit for bit.
    What deletion protects is the prompt's bytes (tests/test_model.py checks none is
    left in a saved checkpoint); what an attack can still recover sits in the shared
    weights, and that is what residual knowledge measures against a never-seen model."""
    trained = make_model()
    deleted = trained.forget(FORGET)
    zeroed = deleted.with_prompt(1, torch.zeros(trained.prompts.shape[1:]))
    budget = params(steps=2)
    from_zeroed = recover(zeroed, SPLITS, FORGET, m, "prompt", budget, 0)
    zero_start = params(steps=2, prompt_init="zeros")
    from_deleted = recover(deleted, SPLITS, FORGET, m, "prompt", zero_start, 0)
    assert from_zeroed.outcome() == from_deleted.outcome()
    assert torch.equal(from_zeroed.model.prompts, from_deleted.model.prompts)


# --- prompt recovery: known answers ----------------------------------------------------


def test_a_never_seen_reference_recovers_under_prompt_head(
    never_prompted: PromptedClassifier,
) -> None:
    """(a) The comparison is not rigged. ``retrain_prompt``'s head row of the class was only
    ever pushed down, and a fresh prompt alone does not lift it (``prompt``: 0, the old
    one-sided comparison); given that row as well (``prompt_head``) and m = 5 shots, the
    reference learns the class far above chance (1/4), and specifically: retained samples
    stay with their own classes."""
    budget = params(steps=6, eval_every=2, anchor_shots=2)
    head = recover(never_prompted, SPLITS, HIDDEN, 5, "prompt_head", budget, 0)
    prompt_only = recover(never_prompted, SPLITS, HIDDEN, 5, "prompt", budget, 0)
    assert head.curve[0][1] == 0.0 and prompt_only.acc == 0.0
    assert head.acc >= 0.75 and head.retain_to_recovered < 0.25, head.outcome()
    assert head.ood_to_recovered is None  # no OOD set given: not measured


def test_a_head_row_left_by_prompt_deletion_recovers_more_than_the_reference(
    prompted: PromptedClassifier, never_prompted: PromptedClassifier
) -> None:
    """(b) Residual knowledge, known answer: ``pfm`` deletes the prompt only, so the class's
    head row keeps what training put in it. Both models start at 0 on the class; under the
    same capability the deleted model recovers it within a budget too short for the
    reference (and so sooner: ``relearn_steps``), and with the budget the reference needs
    it recovers at least as much."""
    deleted = prompted.forget(HIDDEN)
    assert forgotten_accuracy(deleted, HIDDEN) == 0.0
    short, enough = params(steps=2, eval_every=1, anchor_shots=2), params(steps=6, anchor_shots=2)
    attacked, reference = (
        recover(model, SPLITS, HIDDEN, 1, "prompt_head", short, 0)
        for model in (deleted, never_prompted)
    )
    assert attacked.curve[0][1] == 0.0 and reference.curve[0][1] == 0.0
    assert attacked.acc - reference.acc > 0.5, (attacked.curve, reference.curve)
    assert attacked.relearned and not reference.relearned
    assert attacked.relearn_steps < reference.relearn_steps == 2  # short: 2 steps
    attacked, reference = (
        recover(model, SPLITS, HIDDEN, 1, "prompt_head", enough, 0)
        for model in (deleted, never_prompted)
    )
    assert attacked.acc >= reference.acc > 0.5, (attacked.curve, reference.curve)


def test_a_head_row_kept_with_the_class_signal_recovers_more_than_retrain(
    plain: PromptedClassifier, never_plain: PromptedClassifier
) -> None:
    """The plain family's known answer (capability ``head``): "forget" class 1 by lowering
    only its head bias just enough that no class-1 sample is predicted (weights, adapters
    and the head row's direction kept), and compare with a model trained without class 1
    (what retrain is). Both start at 0; with a small budget the attack restores the
    suppressed class and not the never-seen one."""
    leaky = copy.deepcopy(plain)
    samples = Split(
        np.concatenate([DATA.splits[s].inputs for s in ("train", "val", "test")]),
        np.concatenate([DATA.splits[s].labels for s in ("train", "val", "test")]),
    )
    ones = SplitTensors(class_slice(samples, FORGET, True), leaky.input_size, CPU)
    with torch.no_grad():
        logits = leaky(next(ones.batches(len(ones)))[0])  # (N, 4)
        lead = logits[:, 1] - torch.cat([logits[:, :1], logits[:, 2:]], dim=1).amax(dim=1)
        leaky.head.bias[1] -= lead.max() + 0.01
    budget = params(steps=4, lr=1e-3)
    from_leaky, from_never = (
        recover(model, SPLITS, FORGET, 1, "head", budget, 0) for model in (leaky, never_plain)
    )
    assert from_leaky.curve[0][1] == 0.0 and from_never.curve[0][1] == 0.0
    assert from_leaky.acc - from_never.acc > 0.5, (from_leaky.curve, from_never.curve)


def test_relearn_time_is_the_first_crossing_else_the_curves_end() -> None:
    curve = [(0, 0.0), (10, 0.4), (20, 0.5), (30, 0.9)]
    assert relearn_time(curve, 0.5) == (20, True)
    assert relearn_time(curve, 0.95) == (30, False)
    assert relearn_time([(0, 0.6)], 0.5) == (0, True)


def test_the_reported_step_is_the_budgets_end_not_the_curves_best(
    prompted: PromptedClassifier,
) -> None:
    """(d) Data-free at a high rate, the class's logit overshoots — every input goes to the
    class — then the anchors pull the retained classes back and the class with them: the
    curve peaks and falls. Nothing is chosen from the curve: ``acc`` is the budget's end
    on the full test split (the returned copy scored again gives it), and the peak is
    only ``oracle_acc``, the oracle upper bound."""
    budget = params(steps=4, eval_every=1, lr=0.3, anchor_shots=2)
    result = recover(prompted.forget(HIDDEN), SPLITS, HIDDEN, 0, "prompt_head", budget, 0)
    accs = [a for _, a in result.curve]
    assert max(accs) > accs[-1], result.curve  # precondition: it peaks and falls
    assert [s for s, _ in result.curve] == [0, 1, 2, 3, 4]
    assert result.acc == accs[-1] == forgotten_accuracy(result.model, HIDDEN)
    assert result.oracle_acc == max(accs) > result.acc


def test_a_collapse_is_marked_and_an_anchored_attack_is_not(
    never_plain: PromptedClassifier,
) -> None:
    """Without anchors at a high rate the head sends everything to the class: retained
    accuracy falls far below ``collapse_fraction`` of its pre-attack value and the attack
    is marked collapsed, whatever its forgotten-class accuracy; anchored at a small rate
    it is not."""
    wild = recover(never_plain, SPLITS, FORGET, 1, "head", params(lr=1.0, anchor_shots=0), 0)
    assert wild.pre_retain_acc > 0.9 and wild.retain_acc < 0.8 * wild.pre_retain_acc
    assert wild.collapsed and wild.acc == 1.0
    calm = recover(never_plain, SPLITS, FORGET, 1, "head", params(anchor_shots=2), 0)
    assert calm.pre_retain_acc == wild.pre_retain_acc and not calm.collapsed
    relaxed = params(lr=1.0, anchor_shots=0, collapse_fraction=wild.retain_acc / 2)
    assert not recover(never_plain, SPLITS, FORGET, 1, "head", relaxed, 0).collapsed


def test_the_curve_is_scored_on_a_fixed_subset_and_the_end_on_the_full_split(
    never_plain: PromptedClassifier,
) -> None:
    """Curve points score ``curve_samples`` test forgotten-class samples (so multiples of
    1/2 for 2), the end point the full split."""
    result = recover(never_plain, SPLITS, FORGET, 1, "head", params(curve_samples=2), 0)
    assert all(a * 2 == int(a * 2) for _, a in result.curve[:-1])
    full = forgotten_accuracy(result.model, FORGET)
    assert result.curve[-1] == (4, result.acc) and result.acc == full


def test_specificity_of_an_attack_that_sends_everything_to_the_class(
    prompted: PromptedClassifier,
) -> None:
    """(e) Without anchors, data-free at a high rate, the class's logit wins everywhere:
    full "recovery" of the class, and every retained sample, noise input and OOD image
    goes to it too — what the specificity probes are there to show. The OOD images are
    28×28 (Fashion-MNIST's size) and go through the 16-px model as any input does."""
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    data = AttackData(SPLITS.train, SPLITS.test, Split(images, np.zeros(40, int)))
    budget = params(steps=2, eval_every=1, lr=0.1, anchor_shots=0)
    result = recover(prompted.forget(HIDDEN), data, HIDDEN, 0, "prompt_head", budget, 0)
    assert result.acc == 1.0 and result.retain_acc < 0.05 and result.collapsed
    assert result.retain_to_recovered > 0.95
    assert result.noise_to_recovered > 0.95 and result.ood_to_recovered > 0.95


def neighbour_correlation(images: np.ndarray) -> float:
    """Correlation of horizontally adjacent pixels over a batch of images."""
    x = images.astype(np.float64)
    return float(np.corrcoef(x[:, :, :-1].ravel(), x[:, :, 1:].ravel())[0, 1])


def test_specificity_probes_are_seeded_and_apart_from_the_attacks_noise() -> None:
    """The noise probe is another law than the attack's m = 0 positives: smooth images
    (neighbouring pixels agree) against per-pixel uniform ones (they do not), and uniform
    audio features against Gaussian ones; another seed too."""
    like = DATA.splits["train"]
    probe = noise_probe(like, 64, 0)
    assert probe.inputs.shape == (64, 8, 8, 1) and probe.inputs.dtype == np.uint8
    assert np.array_equal(probe.inputs, noise_probe(like, 64, 0).inputs)
    assert not np.array_equal(probe.inputs, noise_probe(like, 64, 1).inputs)
    attack_noise = random_inputs(like, (64, 8, 8, 1), torch.Generator().manual_seed(1))
    assert neighbour_correlation(probe.inputs) > 0.5 > 0.1 > abs(
        neighbour_correlation(attack_noise)
    )  # fmt: skip
    features = Split(np.zeros((2, 10, 8), dtype=np.float16), np.zeros(2, dtype=np.int64))
    audio_probe = noise_probe(features, 256, 0).inputs.astype(np.float32)
    assert audio_probe.dtype == np.float32 and abs(audio_probe).max() <= 1.0
    assert abs(float(audio_probe.std()) - 1 / np.sqrt(3)) < 0.02  # uniform, not N(0, 0.5²)
    ood = Split(np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1), np.zeros(40, np.int64))
    picked = ood_probe(ood, 5, 0)
    assert len(picked) == 5 and len(set(picked.inputs.ravel())) == 5
    assert np.array_equal(picked.inputs, ood_probe(ood, 5, 0).inputs)
    assert len(ood_probe(ood, 500, 0)) == 40


def test_the_ood_probe_is_another_dataset_of_the_attacked_modality() -> None:
    data_params = PARAMS["data"]
    digits = ood_inputs({"image": "digits"}, data_params, DATA)
    assert digits is not None and digits.data_type == "image" and len(digits) > 100
    assert ood_inputs({}, data_params, DATA) is None
    assert ood_inputs({"image": None, "text": "bbc-news"}, data_params, DATA) is None
    assert ood_inputs({"image": "toy"}, data_params, DATA) is None  # the attacked set is not OOD
    assert ood_inputs({"image": ("toy",)}, data_params, DATA) is None
    listed = ood_inputs({"image": ("toy", "digits")}, data_params, DATA)  # the first not itself
    assert listed is not None and np.array_equal(listed.inputs, digits.inputs)
    features = Split(np.zeros((4, 10, 8), dtype=np.float16), np.arange(4) % 2)
    audio = PreparedDataset(
        "sounds", ("a", "b"), dict.fromkeys(("train", "val", "test"), features), "audio"
    )
    assert ood_inputs({"image": "digits"}, data_params, audio) is None  # none for audio
    with pytest.raises(ValueError, match="^ood_datasets.audio: digits holds image, not audio$"):
        ood_inputs({"audio": "digits"}, data_params, audio)


def test_an_ood_list_gives_each_attacked_set_the_first_other_one() -> None:
    """Two sets of one modality probe each other from one list; a single name is a list of
    one; null lists none."""
    both = ("fashion-mnist", "digits")
    assert ood_dataset(both, "digits") == "fashion-mnist"
    assert ood_dataset(both, "fashion-mnist") == "digits"
    assert ood_dataset(both, "pathmnist") == "fashion-mnist"
    assert ood_dataset("digits", "digits") is None
    assert ood_dataset(None, "digits") is None
    assert ood_candidates("digits") == ("digits",) and ood_candidates(None) == ()


# --- prompt recovery: metrics ----------------------------------------------------------


def outcome(acc: float, **changes: object) -> Outcome:
    """A hand-made attack outcome: a two-point curve ending at ``acc``."""
    fields = {
        "curve": [(0, 0.0), (2, acc)], "acc": acc, "oracle_acc": acc, "pre_retain_acc": 0.95,
        "retain_acc": 0.9, "collapsed": False, "relearn_steps": 2, "relearned": acc >= 0.5,
        "retain_to_recovered": 0.1, "noise_to_recovered": 0.2, "ood_to_recovered": 0.3,
    }  # fmt: skip
    return Outcome(**{**fields, **changes})


def test_summarise_pools_units_per_capability_k_and_m() -> None:
    never = {0: outcome(0.0), 1: outcome(0.5, retain_to_recovered=0.4)}
    results = [
        DrawResult((1,), "prompt", {0: outcome(0.2), 1: outcome(1.0)}, never),
        DrawResult((3,), "prompt", {0: outcome(0.4), 1: outcome(0.6)}, never),
        DrawResult((0, 2), "prompt_head", {m: outcome(0.5, ood_to_recovered=None) for m in (0, 1)},
                   never),
    ]  # fmt: skip
    metrics, curves = summarise(results)
    assert metrics["recovery.prompt.k1.m0.acc.mean"] == pytest.approx(0.3)
    assert metrics["recovery.prompt.k1.m0.acc.std"] == pytest.approx(0.1)
    assert metrics["recovery.prompt.k1.m1.residual.mean"] == pytest.approx(0.3)  # 0.5, 0.1
    assert metrics["recovery.prompt.k1.m1.reference_acc.mean"] == 0.5
    assert metrics["recovery.prompt.k1.m1.reference_retain_to_recovered.mean"] == 0.4
    assert metrics["recovery.prompt.k1.m0.relearned.mean"] == 0.0
    assert metrics["recovery.prompt.k1.m1.relearned.mean"] == 1.0
    assert metrics["recovery.prompt.k1.m0.ood_to_recovered.mean"] == pytest.approx(0.3)
    assert "recovery.prompt_head.k2.m0.ood_to_recovered.mean" not in metrics  # no OOD set
    assert metrics["recovery.draws"] == 3
    names = {"prompt k1 m0", "prompt k1 m1", "prompt_head k2 m0", "prompt_head k2 m1"}
    assert set(curves) == names | {f"{n} reference" for n in names}
    assert curves["prompt k1 m1"] == [{"step": 0, "acc": 0.0}, {"step": 2, "acc": 0.8}]
    units = metrics.pop("units")
    assert len(units) == 6 and all(isinstance(v, int | float) for v in metrics.values())
    assert units[1] == {
        "classes": [1], "k": 1, "capability": "prompt", "m": 1, "acc": 1.0,
        "reference_acc": 0.5, "residual": 0.5, "oracle_acc": 1.0, "reference_oracle_acc": 0.5,
        "pre_retain_acc": 0.95, "retain_acc": 0.9, "reference_pre_retain_acc": 0.95,
        "reference_retain_acc": 0.9, "collapsed": 0.0, "reference_collapsed": 0.0,
        "retain_to_recovered": 0.1, "noise_to_recovered": 0.2, "ood_to_recovered": 0.3,
        "reference_retain_to_recovered": 0.4, "reference_noise_to_recovered": 0.2,
        "reference_ood_to_recovered": 0.3, "relearn_steps": 2, "relearned": 1.0,
    }  # fmt: skip
    assert {u["k"] for u in units if u["capability"] == "prompt_head"} == {2}
    json.dumps(units)
    own, _ = summarise([DrawResult((1,), "head", never, never)])  # retrain
    assert own["recovery.head.k1.m1.residual.mean"] == 0.0


def test_mean_curve_averages_draws_and_rejects_mismatched_steps() -> None:
    assert mean_curve([[(0, 0.0), (5, 1.0)], [(0, 0.5), (5, 0.0)]]) == [
        {"step": 0, "acc": 0.25}, {"step": 5, "acc": 0.5},
    ]  # fmt: skip
    with pytest.raises(ValueError, match="share their steps"):
        mean_curve([[(0, 0.0)], [(1, 0.0)]])


def test_bad_recovery_params_are_errors() -> None:
    for change in (
        {"capabilities": ("all",)},
        {"capabilities": ()},
        {"k": 1},
        {"k": ()},
        {"prompt_init": "ones"},
        {"shots": ()},
        {"relearn_threshold": 0.0},
        {"collapse_fraction": 0.0},
        {"prototype_weight": 1.5},
        {"curve_samples": 0},
        {"ood_samples": 0},
        {"budget": {"prompt": Budget(4, 0.01)}},  # no budget for prompt_head, head, head_lora
    ):
        with pytest.raises(ValueError):
            params(**change)
    with pytest.raises(ValueError, match="steps ≥ 1"):
        Budget(0, 0.01)
    assert params(capabilities=("prototype",), budget={}).capabilities == ("prototype",)
    with pytest.raises(ValueError, match="prototype_weight"):
        DatasetKnobs(prototype_weight=1.5)


def test_a_datasets_own_knobs_replace_the_shared_ones_for_it_alone() -> None:
    own = DatasetKnobs(budget={"head": Budget(7, 0.5)}, prototype_weight=0.25)
    shared = params(by_dataset={"fashion-mnist": own, "digits": DatasetKnobs()})
    fm = shared.for_dataset("fashion-mnist")
    assert fm.budget["head"] == Budget(7, 0.5) and fm.prototype_weight == 0.25
    assert {k: v for k, v in fm.budget.items() if k != "head"} == {
        k: v for k, v in shared.budget.items() if k != "head"
    }
    assert shared.for_dataset("digits").budget == shared.budget  # an empty entry: all shared
    assert shared.for_dataset("digits").prototype_weight == shared.prototype_weight
    assert shared.for_dataset("toy") is shared


def test_by_dataset_names_registered_datasets_and_capabilities() -> None:
    section = {**PARAMS["attacks"]["recovery"], "by_dataset": {}}
    ok = {"fashion-mnist": {"budget": {"prompt": {"steps": 40, "lr": 0.001}}}}
    parsed = from_mapping(RecoveryParams, {**section, "by_dataset": ok}, "attacks.recovery")
    assert parsed.for_dataset("fashion-mnist").budget["prompt"] == Budget(40, 0.001)
    for bad in (
        {"no-such-set": {"prototype_weight": 0.5}},
        {"digits": {"budget": {"everything": {"steps": 40, "lr": 0.1}}}},
        {"digits": {"prototype_weight": 0.0}},
        {"digits": {"budget": {"prompt": {"lr": 0.1}}}},  # a budget entry is whole
        {"digits": {"epochs": 3}},
    ):
        with pytest.raises((KeyError, ValueError)):
            from_mapping(RecoveryParams, {**section, "by_dataset": bad}, "attacks.recovery")


def test_attacking_a_saved_model_is_attacking_the_model(tmp_path: Path) -> None:
    """What a worker returns for a model file: every m's outcome, the attack on the
    loaded model without the attacked copy (megabytes that would cross a pipe)."""
    reference = make_model(seed=1).forget(FORGET)
    save_model(reference, tmp_path / "reference.pt")
    budget = params(shots=(0, 1), steps=2)
    saved = attack_saved(tmp_path / "reference.pt", FORGET, 0, "prompt", SPLITS, budget, CPU)
    assert set(attack_saved(tmp_path / "reference.pt", FORGET, 0, "prototype", SPLITS, budget,
                            CPU)) == {1}  # fmt: skip
    assert set(saved) == {0, 1}
    for m, result in saved.items():
        direct = recover(reference, SPLITS, FORGET, m, "prompt", budget, 0)
        assert result == direct.outcome() and not hasattr(result, "model")


# --- prompt recovery: which models, against which reference -----------------------------


def test_each_model_is_attacked_once_per_capability_against_its_familys_reference(
    tmp_path: Path,
) -> None:
    """pfm and pfm_defended (prompt models: read from their files) against retrain_prompt,
    finetune against retrain's model of the same draw, retrain and retrain_prompt against
    themselves; each (model, capability) once, prompt models first and the cached
    head-only attacks last. A run whose reference lacks the draw is refused before any."""
    prompt, plain = make_model(), make_model(with_prompts=False)
    models, references = tmp_path / "unlearned", tmp_path / "references"
    save_unlearned(models / "pfm/seed0", "pfm", {FORGET: prompt.forget(FORGET)})
    save_unlearned(models / "pfm_defended/seed0", "pfm_defended", {FORGET: prompt.forget(FORGET)})
    save_unlearned(models / "retrain/seed0", "retrain", {FORGET: plain, (2,): plain})
    save_unlearned(models / "finetune/seed0", "finetune", {FORGET: plain})
    save_unlearned(references / "seed0", PROMPT_REFERENCE, {FORGET: prompt.forget(FORGET)})
    methods = [("finetune", 0), ("retrain", 0), ("pfm", 0), ("pfm_defended", 0)]
    runs = with_prompt_references(methods, references)
    assert runs == [*methods, ("retrain_prompt", 0)]
    assert with_prompt_references([("pfm", 1)], references) == [("pfm", 1)]  # no seed1 folder
    planned = recovery_runs(models, references, runs, ks=(1,), limit=1)

    def target(path: Path, prompted: bool) -> Target:
        return Target(path.resolve(), FORGET, 0, prompted)

    retrain = target(models / "retrain/seed0" / draw_file(FORGET), False)
    finetune = target(models / "finetune/seed0" / draw_file(FORGET), False)
    pfm = target(models / "pfm/seed0" / draw_file(FORGET), True)
    defended = target(models / "pfm_defended/seed0" / draw_file(FORGET), True)
    never = target(references / "seed0" / draw_file(FORGET), True)
    assert [(r.method, r.prompted, r.draws) for r in planned] == [
        ("finetune", False, ((finetune, retrain),)),
        ("retrain", False, ((retrain, retrain),)),
        ("pfm", True, ((pfm, never),)),
        ("pfm_defended", True, ((defended, never),)),
        ("retrain_prompt", True, ((never, never),)),
    ]
    assert distinct_attacks(planned, QUICK.capabilities_for) == [
        (pfm, "prompt"), (pfm, "prompt_head"), (never, "prompt"), (never, "prompt_head"),
        (defended, "prompt"), (defended, "prompt_head"), (pfm, "prototype"),
        (never, "prototype"), (defended, "prototype"), (finetune, "head_lora"),
        (retrain, "head_lora"), (finetune, "head"), (finetune, "prototype"), (retrain, "head"),
        (retrain, "prototype"),
    ]  # fmt: skip
    save_unlearned(references / "seed0", "retrain_prompt", {FORGET: prompt.forget(FORGET)})
    assert recovery_runs(models, references, runs, ks=(1,), limit=1) == planned  # new name
    save_unlearned(models / "finetune/seed0", "finetune", {(3,): plain})
    with pytest.raises(ValueError, match=r"no draw forgetting classes \[3\]"):
        recovery_runs(models, references, runs, ks=(1,), limit=1)


def test_a_prompt_model_without_a_fitting_reference_is_refused(tmp_path: Path) -> None:
    prompt = make_model()
    models, references = tmp_path / "unlearned", tmp_path / "references"
    save_unlearned(models / "pfm/seed0", "pfm", {FORGET: prompt.forget(FORGET)})
    with pytest.raises(FileNotFoundError, match="no never-seen prompt models"):
        recovery_runs(models, references, [("pfm", 0)], ks=(1,), limit=1)
    save_unlearned(references / "seed0", "pfm", {FORGET: prompt.forget(FORGET)})
    with pytest.raises(ValueError, match="not the never-seen prompt models"):
        recovery_runs(models, references, [("pfm", 0)], ks=(1,), limit=1)
    save_unlearned(references / "seed0", "retrain_prompt", {FORGET: make_model(with_prompts=False)})
    with pytest.raises(ValueError, match="not of one model family"):
        recovery_runs(models, references, [("pfm", 0)], ks=(1,), limit=1)


def test_reference_draws_are_the_unlearn_stages_first_sets_of_every_k() -> None:
    ones, _ = forget_sets(10, 1, 3, 7)
    twos, _ = forget_sets(10, 2, 3, 7)
    assert reference_draws(10, (1,), 3, 2, 7) == ones[:2]
    assert reference_draws(10, (1,), 3, None, 7) == ones
    assert reference_draws(10, (1, 2), 3, 1, 7) == [ones[0], twos[0]]
    all_twos, _ = forget_sets(10, 2, None, 7)
    assert reference_draws(10, (1, 2), {1: 3, 2: None}, 1, 7) == [ones[0], all_twos[0]]
    with pytest.raises(ValueError, match="≥ 1 or null"):
        reference_draws(10, (1,), 3, 0, 7)
    with pytest.raises(ValueError, match=r"k \[2\] are not among the unlearn stage's \[1\]"):
        reference_draws(10, (1, 2), {1: 3}, 1, 7)


def test_never_seen_reference_has_no_prompt_for_the_class() -> None:
    spec = make_model().spec
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-3, eval_modes=())
    model, result = never_seen(spec, FORGET, DATA.splits["train"], config, 0, CPU)
    assert model.bank_classes == [0, 2, 3] and model.spec == spec
    assert result.train_seconds > 0  # what stage train records as its cost
    with pytest.raises(ValueError, match="prompt model"):
        never_seen(
            make_model(with_prompts=False).spec, FORGET, DATA.splits["train"], config, 0, CPU
        )


# --- stage -------------------------------------------------------------------------------


def run_stage(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{name}.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def save_unlearned(folder: Path, method: str, models: dict[tuple[int, ...], PromptedClassifier]):
    draws = []
    for classes, model in models.items():
        save_model(model, folder / draw_file(classes))
        draws.append(draw_entry(classes))
    write_manifest(folder, "toy", method, 0, Path("base.pt"), draws)


STAGE_RECOVERY = {
    "k": [1, 2], "draws": 1, "shots": [0, 1], "capabilities": list(CAPABILITIES),
    "budget": {c: {"steps": 2, "lr": 0.01} for c in TRAINED}, "eval_every": 1,
    "curve_samples": 4, "collapse_fraction": 0.8, "prototype_weight": 1.0,
    "relearn_threshold": 0.5, "anchor_shots": 1, "noise_inputs": 2, "prompt_init": "normal",
    "ood_datasets": {"image": "digits"}, "ood_samples": 8, "batch_size": 64,
}  # fmt: skip
ATTACK_ARGS = (
    "--data", "data", "--models", "unlearned", "--prompt-reference", "ref", "--mia", "mia",
    "--recovery", "recovery", "--curves", "curves/toy",
)  # fmt: skip


def stage_params(methods: list[str]) -> dict:
    params = copy.deepcopy(PARAMS)
    params["train"].update(device="cpu")
    params["attacks"]["mia"].update(batch_size=64, cv_splits=5)
    params["attacks"]["recovery"] = dict(STAGE_RECOVERY)
    return {**params, "methods": methods, "seeds": [0], "workers": 2}


def test_attack_stage_writes_every_capability_k_and_m_with_units(tmp_path: Path, plain) -> None:
    """(f) One process per dataset: every method × seed of params, and retrain_prompt, get
    their metrics (pooled keys and units) and curve files below the stage's folders, in
    the layout the aggregate reads; the prompt models get the prompt capabilities, the
    plain ones the head ones, both the prototype attack at m ≥ 1, at every k and m; the
    references' residual is 0."""
    save_prepared(DATA, tmp_path / "data")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(stage_params(["pfm", "retrain"])))
    draws = ((1,), (0, 3))  # the k = 1 and k = 2 draws every method holds
    prompt, never = make_model(), make_model(seed=1)
    unlearned = tmp_path / "unlearned"
    save_unlearned(unlearned / "pfm/seed0", "pfm", {c: prompt.forget(c) for c in draws})
    save_unlearned(unlearned / "retrain/seed0", "retrain", dict.fromkeys(draws, plain))
    save_unlearned(tmp_path / "ref/seed0", "retrain_prompt", {c: never.forget(c) for c in draws})
    result = run_stage("attack", *ATTACK_ARGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    families = {
        "pfm": ("prompt", "prompt_head", "prototype"),
        "retrain_prompt": ("prompt", "prompt_head", "prototype"),
        "retrain": ("head", "head_lora", "prototype"),
    }  # fmt: skip
    cells = {  # (capability, m) of each family: the prototype attack needs a shot
        method: [(c, m) for c in caps for m in (0, 1) if c != "prototype" or m]
        for method, caps in families.items()
    }
    for method, capabilities in families.items():
        mia = json.loads((tmp_path / f"mia/{method}/seed0.json").read_text())
        assert mia["mia_draws"] == 1 and mia["mia_k"] == 1  # only the k = 1 draw
        assert {f"mia.{v}.{s}" for v in MIA_VARIANTS for s in ("mean", "std")} <= set(mia)
        (unit,) = mia["units"]
        assert unit["classes"] == [1] and unit["k"] == 1
        assert {f"mia.{v}" for v in MIA_VARIANTS} <= set(unit)
        metrics = json.loads((tmp_path / f"recovery/{method}/seed0.json").read_text())
        units = metrics.pop("units")
        assert all(isinstance(v, int | float) for v in metrics.values())
        assert metrics["recovery.draws"] == 2
        expected = {
            f"recovery.{cap}.k{k}.m{m}.{field}.{stat}"
            for cap, m in cells[method] for k in (1, 2) for field in FIELDS
            for stat in ("mean", "std")
        }  # fmt: skip
        assert set(metrics) - {"recovery.draws"} == expected
        assert len(units) == 2 * len(cells[method])  # draws × (capability, m)
        for unit in units:
            assert unit["k"] == len(unit["classes"]) and unit["capability"] in capabilities
            assert set(unit) == {"classes", "k", "capability", "m", *FIELDS}
        curves = json.loads((tmp_path / f"curves/toy/{method}/seed0.json").read_text())
        names = {f"{cap} k{k} m{m}" for cap, m in cells[method] for k in (1, 2)}
        assert set(curves) == names | {f"{name} reference" for name in names}
        for name, curve in curves.items():
            steps = [0, 1] if name.startswith("prototype") else [0, 1, 2]
            assert [p["step"] for p in curve] == steps, name
    for method in ("retrain", "retrain_prompt"):  # their own references
        metrics = json.loads((tmp_path / f"recovery/{method}/seed0.json").read_text())
        residuals = [v for k, v in metrics.items() if k.endswith(".residual.mean")]
        assert len(residuals) == 2 * len(cells[method]) and not any(residuals)
    relearn = read_relearn_curves(tmp_path / "curves")
    assert len(relearn["toy"]["pfm prompt_head k2 m1 reference"]) == 1  # one seed


def test_attack_stage_without_a_manifest_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    save_prepared(DATA, tmp_path / "data")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(stage_params(["pfm"])))
    monkeypatch.chdir(tmp_path)
    args = ["missing" if arg == "unlearned" else arg for arg in ATTACK_ARGS]
    monkeypatch.setattr(sys, "argv", ["attack.py", *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "stages/attack.py"), run_name="__main__")
    assert exit_info.value.code == 2
    assert "error: no unlearned-model manifest" in capsys.readouterr().err
    assert not any((tmp_path / out).exists() for out in ("mia", "recovery", "curves"))


def test_the_attack_stage_runs_the_attacked_datasets_own_knobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_prepared(replace(DATA, name="digits"), tmp_path / "data")
    params = stage_params(["pfm"])
    own = {"budget": {"head": {"steps": 7, "lr": 0.5}}, "prototype_weight": 0.25}
    params["attacks"]["recovery"]["by_dataset"] = {"digits": own}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    seen: list[RecoveryParams] = []
    monkeypatch.setattr(suite, "attack_all", lambda *args: seen.append(args[4]))  # its recovery
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["attack.py", *ATTACK_ARGS])
    runpy.run_path(str(ROOT / "stages/attack.py"), run_name="__main__")
    (recovery,) = seen
    assert recovery.budget["head"] == Budget(7, 0.5) and recovery.prototype_weight == 0.25
    assert recovery.budget["prompt"] == Budget(**STAGE_RECOVERY["budget"]["prompt"])


def test_data_free_inputs_follow_the_modality() -> None:
    generator = torch.Generator().manual_seed(0)
    images = Split(np.zeros((2, 8, 8, 1), dtype=np.uint8), np.zeros(2, dtype=np.int64))
    noise = random_inputs(images, (64, 8, 8, 1), generator)
    assert noise.dtype == np.uint8 and noise.shape == (64, 8, 8, 1) and noise.max() > 200
    features = Split(np.zeros((2, 100, 128), dtype=np.float16), np.zeros(2, dtype=np.int64))
    noise = random_inputs(features, (64, 100, 128), generator)
    assert noise.dtype == np.float16 and noise.shape == (64, 100, 128)
    assert (
        abs(float(noise.mean())) < 0.01 and abs(float(noise.astype(np.float32).std()) - 0.5) < 0.01
    )
    Split(noise, np.zeros(64, dtype=np.int64))  # a valid audio split
