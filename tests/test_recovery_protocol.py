"""The recovery protocol's guarantees: at m = 0 the attacking code gets no forgotten-class
label, the training-free prototype attack restores a head row it should and touches
nothing else, and every registered capability runs on every model family it fits,
changing only what it declares."""

import copy

import numpy as np
import pytest
import torch

from pfm.attacks import CAPABILITIES
from pfm.attacks.probes import AttackData, adversary_view
from pfm.attacks.recovery import attack_every_shot, recover
from pfm.data.prepared import Split
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.data import class_slice
from tests.conftest import make_model
from tests.test_attacks import DATA, FORGET, SPLITS, changed_keys, fit_plain, params, snapshot


@pytest.fixture(scope="module")
def plain() -> PromptedClassifier:
    return fit_plain(DATA.splits["train"], epochs=6)


def without_forgotten_training_samples(data: AttackData, classes: tuple[int, ...]) -> AttackData:
    """``data`` whose train split holds no sample of ``classes`` at all."""
    return AttackData(class_slice(data.train, classes, False), data.test, data.ood)


def test_the_data_free_view_holds_no_forgotten_class_sample() -> None:
    view = adversary_view(DATA.splits["train"], FORGET, 0, 2, 3, 4, 0)
    assert len(view.shots) == 0 and not np.isin(view.anchors.labels, FORGET).any()
    noise = view.noise()
    assert list(noise.labels) == [1, 1, 1]  # the class's id, on noise
    assert len(adversary_view(DATA.splits["train"], FORGET, 2, 2, 3, 4, 0).shots) == 2


@pytest.mark.parametrize("capability", ["prompt_head", "head", "head_lora"])
def test_at_m0_the_attack_is_the_same_without_any_forgotten_class_sample(
    capability: str, plain: PromptedClassifier
) -> None:
    """Remove every forgotten-class sample from what the adversary could read: the m = 0
    attack is bit for bit the same, so it never read one (m = 1 does read its shot)."""
    model = make_model().forget(FORGET) if capability == "prompt_head" else plain
    stripped = without_forgotten_training_samples(SPLITS, FORGET)
    budget = params(steps=2, lr=0.1)
    full = recover(model, SPLITS, FORGET, 0, capability, budget, 0)
    blind = recover(model, stripped, FORGET, 0, capability, budget, 0)
    assert full.outcome() == blind.outcome()
    with pytest.raises(ValueError, match="fewer than m = 1"):
        recover(model, stripped, FORGET, 1, capability, budget, 0)


def suppressed(model: PromptedClassifier, c: int) -> PromptedClassifier:
    """``model`` with class ``c``'s head row zeroed and its bias pushed below every other
    logit: the class is never predicted, while the features keep what the encoder
    learnt."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.head.weight[c] = 0
        out.head.bias[c] = out.head.bias.min() - 100
    return out


def test_the_prototype_attack_restores_a_suppressed_head_row_and_nothing_else(
    plain: PromptedClassifier,
) -> None:
    """Known answer: a class whose head row was wiped comes back from 5 shots' prototype
    (features still separate it), the other rows and everything else untouched; the
    curve is the model before and after the overwrite."""
    model = suppressed(plain, FORGET[0])
    before = snapshot(model)
    result = recover(model, SPLITS, FORGET, 5, "prototype", params(), 0)
    assert result.curve[0] == (0, 0.0) and result.curve[-1][0] == 1
    assert result.acc > 0.5 and not result.collapsed, result.outcome()
    assert changed_keys(before, result.model) == {"head.weight", "head.bias"}
    others = [c for c in range(4) if c not in FORGET]
    for name in ("head.weight", "head.bias"):
        assert torch.equal(result.model.state_dict()[name][others], before[name][others])
    row = result.model.head.weight[FORGET[0]]
    scale = before["head.weight"][others].norm(dim=1).mean()
    torch.testing.assert_close(row.norm(), scale)  # weight 1: the scaled prototype
    half = recover(model, SPLITS, FORGET, 5, "prototype", params(prototype_weight=0.5), 0)
    torch.testing.assert_close(half.model.head.weight[FORGET[0]], row / 2)  # zero row mixed


def test_the_prototype_attack_needs_a_shot_and_fits_prompt_models_too() -> None:
    model = make_model().forget(FORGET)
    with pytest.raises(ValueError, match="needs m ≥ 1"):
        recover(model, SPLITS, FORGET, 0, "prototype", params(), 0)
    assert set(attack_every_shot(model, SPLITS, FORGET, "prototype", params(), 0)) == {1}
    result = recover(model, SPLITS, FORGET, 1, "prototype", params(), 0)
    assert result.model.bank_classes == [0, 2, 3]  # no prompt is added


FITTING = [
    pytest.param(name, prompted, id=f"{name}-{'prompt' if prompted else 'plain'}")
    for name in CAPABILITIES
    for prompted in (True, False)
    if CAPABILITIES.get(name).fits(prompted)
]


@pytest.mark.parametrize(("name", "prompted"), FITTING)
def test_every_capability_changes_only_what_it_declares(name: str, prompted: bool) -> None:
    """Registry-wide: each capability runs on each family it fits, at the smallest m it
    takes, leaving its input intact and moving nothing outside its masks; reports
    numbers in range."""
    capability = CAPABILITIES.get(name)
    model = make_model(with_prompts=prompted)
    model = model.forget(FORGET) if prompted else model
    before = snapshot(model)
    m = capability.min_shots
    result = recover(model, SPLITS, FORGET, m, name, params(steps=2, lr=0.1), 0)
    assert changed_keys(before, model) == set()
    _, trained = capability.prepare(model, FORGET, "normal", torch.Generator())
    allowed = {t.name for t in trained} | {"prompt_classes"}
    assert changed_keys(before, result.model) <= allowed
    for t in trained:
        if t.rows is not None and t.name in before and t.name != "prompts":
            after = result.model.state_dict()[t.name]
            assert torch.equal(after[~t.rows], before[t.name][~t.rows])
    values = result.outcome()
    assert 0 <= values.acc <= values.oracle_acc <= 1 and 0 <= values.retain_acc <= 1
    assert values.curve[-1][1] == values.acc


def test_shots_are_read_only_from_train() -> None:
    """The m shots come from the train split only: a test split of other inputs changes
    the score, not what was trained."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, DATA.splits["test"].inputs.shape, dtype=np.uint8)
    other = AttackData(SPLITS.train, Split(images, DATA.splits["test"].labels))
    model = make_model().forget(FORGET)
    budget = params(steps=2, lr=0.1)
    first = recover(model, SPLITS, FORGET, 1, "prompt_head", budget, 0)
    second = recover(model, other, FORGET, 1, "prompt_head", budget, 0)
    assert torch.equal(first.model.prompts, second.model.prompts)
