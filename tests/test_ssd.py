"""SSD's known answers: the dampening rule on hand-made tensors, and why []_D must be
estimated on mixed batches (with forget-only batches, α ≥ C/k selects nothing)."""

import pytest
import torch

from pfm.batches import SplitTensors
from pfm.evaluate import predict
from pfm.losses import plain_objective
from pfm.models.prompted import PromptedClassifier
from pfm.train import TrainConfig, train
from pfm.unlearn import unlearn
from pfm.unlearn.data import CountedSplit, Tally, class_slice, join
from pfm.unlearn.ssd import SsdRecipe, dampen, importance, selected
from tests.conftest import make_model, toy_dataset

CPU = torch.device("cpu")
C = 4
FORGET = (1,)
# 4 samples per class and batches of 4: every forget sample sits in a forget-only batch of
# the ordered join, the layout under which []_D ≥ (k/C) []_f holds exactly.
DATA = toy_dataset(num_classes=C, per_class=4)
BATCH = 4
ALPHA = 10.0  # the committed α, ≥ C/k = 4
RECIPE = SsdRecipe(batch_size=BATCH, selection_weighting=ALPHA, dampening_constant=1.0)


@pytest.fixture(scope="module")
def plain() -> PromptedClassifier:
    """A plain classifier trained until the forget class (a bright corner) is separated."""
    model = make_model(num_classes=C, with_prompts=False)
    splits = [SplitTensors(DATA.splits[s], model.input_size, CPU) for s in ("train", "val")]
    config = TrainConfig(epochs=4, batch_size=4, lr=1e-2, eval_modes=())
    train(model, plain_objective, *splits, config, 0, None, "")
    return model.eval()


def test_dampen_scales_exactly_the_selected_elements_by_the_clamped_ratio() -> None:
    param = torch.tensor([2.0, 2.0, 2.0, 2.0, 2.0, -3.0])
    forget_importance = torch.tensor([8.0, 3.0, 2.0, 0.0, 5.0, 16.0])
    full_importance = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 2.0])
    mask = selected(forget_importance, full_importance, selection_weighting=2.0)
    assert mask.tolist() == [True, True, False, False, True, True]
    dampen(param, forget_importance, full_importance, 2.0, dampening_constant=4.0)
    # β = λ []_D / []_f: 4/8 halves; 4/3 is clamped to 1 (dampening never grows a weight);
    # 2 ≯ 2·1 and 0 ≯ 0 are not selected (and 0/0 never reaches them); []_D = 0 zeroes;
    # 4·2/16 halves
    assert torch.equal(param, torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0, -1.5]))


def handles(model: PromptedClassifier) -> tuple[CountedSplit, CountedSplit]:
    tally = Tally()
    forget, retain = (
        CountedSplit(
            class_slice(DATA.splits["train"], FORGET, keep), model.input_size, CPU, tally, keep
        )
        for keep in (True, False)
    )
    return forget, retain


def test_forget_only_batches_select_nothing_at_alpha_over_c_per_k_mixed_ones_do(
    plain: PromptedClassifier,
) -> None:
    train_split = SplitTensors(DATA.splits["train"], plain.input_size, CPU)
    learnt = predict(plain, train_split, "full_bank", 64) == train_split.labels.numpy()
    assert learnt[train_split.labels.numpy() == FORGET[0]].all(), "forget class not learnt"
    forget, retain = handles(plain)
    forgotten = importance(plain, forget.batches(BATCH))
    ordered = importance(plain, join(forget, retain).batches(BATCH))
    assert any(t.any() for t in forgotten.values())
    assert not any(selected(forgotten[n], ordered[n], ALPHA).any() for n in forgotten)
    _, cost = unlearn("ssd", plain, FORGET, DATA.splits["train"], RECIPE, 0)
    assert cost.trainable_params > 0
    assert cost.samples_touched == len(DATA.splits["train"].labels) + len(forget)


def test_ssd_is_deterministic_by_seed(plain: PromptedClassifier) -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        unlearned, _ = unlearn("ssd", plain, FORGET, DATA.splits["train"], RECIPE, seed)
        return unlearned.state_dict()

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(v, again[k]) for k, v in first.items())
    assert not all(torch.equal(v, other[k]) for k, v in first.items())
