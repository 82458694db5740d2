"""Attacks: the membership-inference maths on known answers, each attack's known-answer
behaviour on tiny models (it finds a leak where there is one, and nothing where there is
none), the recovery attack's invariants, and the attack stages' contracts."""

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pfm.attacks import MIA_VARIANTS, MiaParams, RecoveryParams
from pfm.attacks.draws import matching_draw, pool, select_draws
from pfm.attacks.mia import (
    MembershipData,
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
from pfm.attacks.recovery import (
    attack_every_shot,
    attack_saved,
    draw_shots,
    head_inputs,
    mean_curve,
    random_inputs,
    recover,
    summarise,
)
from pfm.attacks.reference import never_seen, reference_draws
from pfm.attacks.targets import Target, distinct_targets, recovery_runs
from pfm.batches import SplitTensors
from pfm.data import save_prepared
from pfm.data.prepared import PreparedDataset, Split
from pfm.evaluate import forget_sets
from pfm.losses import plain_objective
from pfm.models.checkpoint import save_model
from pfm.models.prompted import PromptedClassifier
from pfm.train import TrainConfig, train
from pfm.unlearn.data import class_slice
from pfm.unlearn.manifest import draw_entry, draw_file, write_manifest
from tests.conftest import make_model, toy_dataset

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
CPU = torch.device("cpu")
MIA = MiaParams(k=1, draws=None, batch_size=64, svc_c=3.0, cv_splits=5, cv_test_size=0.1)
QUICK = RecoveryParams(
    k=1, draws=1, shots=(0, 1), steps=4, lr=0.01, eval_every=2, anchor_shots=1,
    noise_inputs=2, baseline_target="head", prompt_init="normal", batch_size=64,
)  # fmt: skip
FORGET = (1,)


def toy_with_test(per_class: int = 8) -> PreparedDataset:
    """The conftest toy task with a test split as large as its train split (the toy's own
    has 3 a class, too few for a 5-split attacker)."""
    data = toy_dataset(num_classes=4, per_class=per_class)
    test = toy_dataset(num_classes=4, per_class=per_class, seed=1).splits["train"]
    return PreparedDataset(data.name, data.class_names, {**data.splits, "test": test})


DATA = toy_with_test()


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
    variant = MIA_VARIANTS.get(name)
    leaky, clean = variant(membership(True), MIA, 0), variant(membership(False), MIA, 0)
    assert min(leaky, clean) >= 0.0 and max(leaky, clean) <= 1.0
    assert LEAK_DIRECTION[name] * (leaky - clean) > 0.4, (leaky, clean)
    assert variant(membership(True), MIA, 0) == leaky  # seed-deterministic


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


# --- prompt recovery ---------------------------------------------------------------------


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
    assert np.array_equal(one.images[0], five.images[0])  # m = 1 ⊂ m = 5
    assert np.array_equal(draw_shots(split, FORGET, 5, 0).images, five.images)
    with pytest.raises(ValueError, match="fewer than m = 99"):
        draw_shots(split, FORGET, 99, 0)


@pytest.mark.parametrize("m", [0, 1])
def test_recovery_trains_only_the_fresh_prompt(m: int) -> None:
    model = make_model().forget(FORGET)
    before = snapshot(model)
    result = recover(model, DATA.splits["train"], DATA.splits["test"], FORGET, m, QUICK, 0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # input kept
    after = result.model.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        if key not in ("prompts", "prompt_classes"):
            assert torch.equal(after[key], value), key  # bitwise unchanged
    fresh = result.model.prompt_classes == 1
    kept = result.model.prompts[~fresh].detach()
    assert torch.equal(kept, model.prompts.detach())  # every other row bitwise unchanged
    start = torch.randn(model.prompts.shape[1:], generator=torch.Generator().manual_seed(0))
    moved = (result.model.prompts[fresh][0].detach() - start).abs().max()
    assert 0 < moved <= QUICK.steps * QUICK.lr * 1.01  # it trained, from its seeded N(0, 1)
    assert [s for s, _ in result.curve] == [0, 2, 4]


@pytest.mark.parametrize("target", ["head", "head_lora"])
def test_recovery_of_a_plain_model_trains_only_its_target(
    plain: PromptedClassifier, target: str
) -> None:
    params = RecoveryParams(**{**QUICK.__dict__, "baseline_target": target})
    before = snapshot(plain)
    result = recover(plain, DATA.splits["train"], DATA.splits["test"], FORGET, 1, params, 0)
    changed = {k for k, v in result.model.state_dict().items() if not torch.equal(v, before[k])}
    assert {"head.weight", "head.bias"} <= changed
    adapters = {k for k in changed if "lora_" in k}
    assert changed == {"head.weight", "head.bias"} | adapters
    assert bool(adapters) == (target == "head_lora")


def test_head_inputs_are_what_the_head_reads(plain: PromptedClassifier) -> None:
    """The head-only attack trains on cached head inputs: the head applied to them must
    give the model's own logits."""
    x, _ = next(SplitTensors(DATA.splits["test"], plain.input_size, CPU).batches(16))
    with torch.no_grad():
        torch.testing.assert_close(plain.head(head_inputs(plain, x)), plain(x))


def test_recovery_is_deterministic_by_seed() -> None:
    model = make_model().forget(FORGET)
    args = (DATA.splits["train"], DATA.splits["test"], FORGET, 0, QUICK)
    first, again, other = (
        recover(model, *args, 0),
        recover(model, *args, 0),
        recover(model, *args, 1),
    )
    assert first.curve == again.curve and first.retain_acc == again.retain_acc
    assert torch.equal(first.model.prompts, again.model.prompts)
    assert not torch.equal(first.model.prompts, other.model.prompts)


def test_a_prompt_left_in_the_model_is_where_the_attack_starts() -> None:
    """A "forgotten" model that kept the class's prompt row hands its bytes to the
    adversary, who starts from them; after proper deletion only a fresh random row is
    left. One Adam step moves each element by at most about lr."""
    trained = make_model()
    params = RecoveryParams(**{**QUICK.__dict__, "steps": 1, "eval_every": 1})
    split_args = (DATA.splits["train"], DATA.splits["test"], FORGET, 1, params, 0)
    kept = recover(trained, *split_args)
    deleted = recover(trained.forget(FORGET), *split_args)
    start_kept = kept.model.prompts[kept.model.prompt_classes == 1]
    start_deleted = deleted.model.prompts[deleted.model.prompt_classes == 1]
    assert (start_kept - trained.prompts[1]).abs().max() <= params.lr * 1.01
    assert (start_deleted - trained.prompts[1]).abs().max() > 1.0


def test_a_head_row_kept_with_the_class_signal_recovers_more_than_a_never_seen_model(
    plain: PromptedClassifier,
) -> None:
    """Known answer for residual knowledge: "forget" class 1 by lowering only its head
    bias just enough that no class-1 sample is predicted (weights, adapters and the head
    row's direction kept), and compare with a model trained without class 1 (what
    retrain is). Both start at 0 forgotten-class accuracy; with a small budget the
    relearning attack restores the suppressed class and not the never-seen one."""
    leaky = copy.deepcopy(plain)
    samples = Split(
        np.concatenate([DATA.splits[s].images for s in ("train", "test")]),
        np.concatenate([DATA.splits[s].labels for s in ("train", "test")]),
    )
    ones = SplitTensors(class_slice(samples, FORGET, True), leaky.input_size, CPU)
    with torch.no_grad():
        logits = leaky(next(ones.batches(len(ones)))[0])  # (N, 4)
        lead = logits[:, 1] - torch.cat([logits[:, :1], logits[:, 2:]], dim=1).amax(dim=1)
        leaky.head.bias[1] -= lead.max() + 0.01
    never = fit_plain(class_slice(DATA.splits["train"], FORGET, False), epochs=6)
    params = RecoveryParams(**{**QUICK.__dict__, "steps": 4, "lr": 1e-3})
    split_args = (DATA.splits["train"], DATA.splits["test"], FORGET, 1, params, 0)
    from_leaky, from_never = recover(leaky, *split_args), recover(never, *split_args)
    assert from_leaky.curve[0][1] == 0.0 and from_never.curve[0][1] == 0.0
    assert from_leaky.acc - from_never.acc > 0.5, (from_leaky.curve, from_never.curve)


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
    zero_start = RecoveryParams(**{**QUICK.__dict__, "prompt_init": "zeros"})
    split_args = (DATA.splits["train"], DATA.splits["test"], FORGET, m)
    from_zeroed = recover(zeroed, *split_args, QUICK, 0)
    from_deleted = recover(deleted, *split_args, zero_start, 0)
    assert from_zeroed.curve == from_deleted.curve
    assert torch.equal(from_zeroed.model.prompts, from_deleted.model.prompts)


def test_recovery_metrics_curves_and_residual() -> None:
    model = make_model().forget(FORGET)
    reference = make_model(seed=1).forget(FORGET)
    train_split, test_split = DATA.splits["train"], DATA.splits["test"]
    attacked = attack_every_shot(model, train_split, test_split, FORGET, QUICK, 0)
    never = attack_every_shot(reference, train_split, test_split, FORGET, QUICK, 0)
    assert set(attacked) == set(QUICK.shots)
    metrics, curves = summarise([(attacked, never)], QUICK, True)
    for m in QUICK.shots:
        acc, ref = metrics[f"recovery.m{m}.acc.mean"], metrics[f"recovery.m{m}.reference_acc.mean"]
        assert acc == attacked[m].acc and ref == never[m].acc
        assert metrics[f"recovery.m{m}.residual.mean"] == pytest.approx(acc - ref)
        assert 0.0 <= metrics[f"recovery.m{m}.retain_acc.mean"] <= 1.0
        assert curves[f"m{m}"][-1] == {"step": QUICK.steps, "acc": acc}
        assert curves[f"m{m} never-seen"][-1]["acc"] == ref
    assert metrics["recovery.draws"] == 1 and metrics["recovery.steps"] == QUICK.steps
    own, own_curves = summarise([(attacked, attacked)], QUICK, False)
    assert all(own[f"recovery.m{m}.residual.mean"] == 0.0 for m in QUICK.shots)  # retrain
    assert set(own_curves) == {"m0", "m1"}
    json.dumps(metrics)  # flat numbers only


def test_mean_curve_averages_draws_and_rejects_mismatched_steps() -> None:
    assert mean_curve([[(0, 0.0), (5, 1.0)], [(0, 0.5), (5, 0.0)]]) == [
        {"step": 0, "acc": 0.25}, {"step": 5, "acc": 0.5},
    ]  # fmt: skip
    with pytest.raises(ValueError, match="share their steps"):
        mean_curve([[(0, 0.0)], [(1, 0.0)]])


def test_bad_recovery_params_are_errors() -> None:
    for change in (
        {"baseline_target": "all"},
        {"prompt_init": "ones"},
        {"shots": ()},
        {"steps": 0},
    ):
        with pytest.raises(ValueError):
            RecoveryParams(**{**QUICK.__dict__, **change})


def test_attacking_a_saved_model_is_attacking_the_model(tmp_path: Path) -> None:
    """What a worker returns for a model file: every m's outcome, the attack on the
    loaded model without the attacked copy (megabytes that would cross a pipe)."""
    reference = make_model(seed=1).forget(FORGET)
    save_model(reference, tmp_path / "reference.pt")
    train_split, test_split = DATA.splits["train"], DATA.splits["test"]
    saved = attack_saved(tmp_path / "reference.pt", FORGET, 0, train_split, test_split, QUICK, CPU)
    assert set(saved) == set(QUICK.shots)
    for m, outcome in saved.items():
        direct = recover(reference, train_split, test_split, FORGET, m, QUICK, 0)
        assert outcome == direct.outcome() and not hasattr(outcome, "model")


def test_each_model_is_attacked_once_and_baselines_share_retrains_draw(tmp_path: Path) -> None:
    """pfm against its never-seen reference, finetune against retrain's model of the
    same draw, retrain against itself: four attacks for three runs, prompt models first
    (the long ones), and a run whose reference lacks the draw is refused before any."""
    prompt, plain = make_model(), make_model(with_prompts=False)
    models, references = tmp_path / "unlearned", tmp_path / "references"
    save_unlearned(models / "pfm/seed0", "pfm", {FORGET: prompt.forget(FORGET)})
    save_unlearned(models / "retrain/seed0", "retrain", {FORGET: plain, (2,): plain})
    save_unlearned(models / "finetune/seed0", "finetune", {FORGET: plain})
    save_unlearned(references / "seed0", "never_seen", {FORGET: prompt.forget(FORGET)})
    runs = [("finetune", 0), ("retrain", 0), ("pfm", 0)]
    planned = recovery_runs(models, references, runs, k=1, limit=1)

    def target(path: Path, prompted: bool) -> Target:
        return Target(path.resolve(), FORGET, 0, prompted)

    retrain = target(models / "retrain/seed0" / draw_file(FORGET), False)
    finetune = target(models / "finetune/seed0" / draw_file(FORGET), False)
    pfm = target(models / "pfm/seed0" / draw_file(FORGET), True)
    never = target(references / "seed0" / draw_file(FORGET), True)
    assert [(r.method, r.prompted, r.draws) for r in planned] == [
        ("finetune", False, ((finetune, retrain),)),
        ("retrain", False, ((retrain, retrain),)),
        ("pfm", True, ((pfm, never),)),
    ]
    assert distinct_targets(planned) == [pfm, never, finetune, retrain]
    save_unlearned(models / "finetune/seed0", "finetune", {(3,): plain})
    with pytest.raises(ValueError, match=r"no draw forgetting classes \[3\]"):
        recovery_runs(models, references, runs, k=1, limit=1)


def test_reference_draws_are_the_unlearn_stages_first_sets() -> None:
    sets, _ = forget_sets(10, 1, 3, 7)
    assert reference_draws(10, 1, 3, 2, 7) == sets[:2]
    assert reference_draws(10, 1, 3, None, 7) == sets
    with pytest.raises(ValueError, match="≥ 1 or null"):
        reference_draws(10, 1, 3, 0, 7)


def test_never_seen_reference_has_no_prompt_for_the_class() -> None:
    spec = make_model().spec
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-3, eval_modes=())
    model = never_seen(spec, FORGET, DATA.splits["train"], config, 0, CPU)
    assert model.bank_classes == [0, 2, 3] and model.spec == spec
    with pytest.raises(ValueError, match="prompt model"):
        never_seen(
            make_model(with_prompts=False).spec, FORGET, DATA.splits["train"], config, 0, CPU
        )


# --- stages ------------------------------------------------------------------------------


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


def tiny_params() -> dict:
    params = copy.deepcopy(PARAMS)
    params["train"].update(epochs=1, batch_size=16, device="cpu")
    params["attacks"]["mia"].update(batch_size=64, cv_splits=5)
    params["attacks"]["recovery"].update(shots=[0, 1], steps=2, eval_every=1, noise_inputs=2)
    return params


def test_attack_stages_write_flat_metrics_and_curves(tmp_path: Path, plain) -> None:
    """One process per dataset: every method × seed of params gets its own metrics and
    curve file below the stage's folders, in the layout the aggregate reads."""
    save_prepared(DATA, tmp_path / "data")
    params = {**tiny_params(), "methods": ["pfm", "retrain"], "seeds": [0]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_stage(
        "train", "--data", "data", "--seed", "0", "--model", "pfm.pt", "--checkpoint",
        "checkpoints/seed0.pt", "--metrics", "train.json", "--history", "history.json",
        "--references", "ref/seed0", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (attacked,) = reference_draws(4, 1, params["unlearn"]["max_sets"], 1, 0)  # the k = 1 draw
    other = tuple(c for c in range(4) if c not in attacked)[:2]  # a k = 2 draw
    assert json.loads((tmp_path / "ref/seed0/manifest.json").read_text())["draws"] == [
        {"k": 1, "classes": list(attacked), "model": draw_file(attacked)}
    ]
    prompt = make_model()
    unlearned = tmp_path / "unlearned"
    save_unlearned(
        unlearned / "pfm/seed0",
        "pfm",
        {attacked: prompt.forget(attacked), other: prompt.forget(other)},
    )
    save_unlearned(unlearned / "retrain/seed0", "retrain", {attacked: plain, other: plain})
    result = run_stage(
        "attack", "--data", "data", "--models", "unlearned", "--prompt-reference", "ref",
        "--mia", "mia", "--recovery", "recovery", "--curves", "curves", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for method in ("pfm", "retrain"):
        mia = json.loads((tmp_path / f"mia/{method}/seed0.json").read_text())
        assert mia["mia_draws"] == 1 and mia["mia_k"] == 1  # only the k = 1 draw
        assert {f"mia.{v}.{s}" for v in MIA_VARIANTS for s in ("mean", "std")} <= set(mia)
    for method in ("pfm", "retrain"):
        metrics = json.loads((tmp_path / f"recovery/{method}/seed0.json").read_text())
        assert all(isinstance(v, int | float) for v in metrics.values())
        assert {f"recovery.m{m}.{key}.mean" for m in (0, 1) for key in ("acc", "residual")} <= set(
            metrics
        )
        curves = json.loads((tmp_path / f"curves/{method}/seed0.json").read_text())
        names = {"m0", "m1"} | ({"m0 never-seen", "m1 never-seen"} if method == "pfm" else set())
        assert set(curves) == names and [p["step"] for p in curves["m1"]] == [0, 1, 2]
    retrain = json.loads((tmp_path / "recovery/retrain/seed0.json").read_text())
    assert retrain["recovery.m1.residual.mean"] == 0.0  # retrain is its own reference


def test_attack_stage_without_a_manifest_is_a_clean_error(tmp_path: Path) -> None:
    save_prepared(DATA, tmp_path / "data")
    params = {**tiny_params(), "methods": ["pfm"], "seeds": [0]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_stage(
        "attack", "--data", "data", "--models", "missing", "--prompt-reference", "ref",
        "--mia", "mia", "--recovery", "recovery", "--curves", "curves", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and "error: no unlearned-model manifest" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any((tmp_path / out).exists() for out in ("mia", "recovery", "curves"))


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
