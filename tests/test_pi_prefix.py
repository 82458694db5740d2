"""PI-Prefix: the pseudo-inverse algebra, deep prefixes that act only through their hooks,
the forget-only variant's data, the cost split and the checkpoint round trip."""

import dataclasses
import time
from pathlib import Path

import pytest
import torch

from pfm.batches import SplitTensors
from pfm.cost import Meter, changed_parameters, transform_timer
from pfm.losses import relabelled_objective
from pfm.models.backbones import encoder_layers
from pfm.models.checkpoint import load_model, save_model
from pfm.models.prefix import deep_prefix
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn import unlearn
from pfm.unlearn.pi_prefix import PrefixRecipe, pinv_transpose
from tests.conftest import make_model, toy_dataset

CPU = torch.device("cpu")
DATA = toy_dataset(num_classes=4, per_class=2)
RECIPE = PrefixRecipe(epochs=1, batch_size=4, lr=0.01, prefix_len=2, target="uniform")


@pytest.fixture(scope="module")
def plain() -> PromptedClassifier:
    return make_model(with_prompts=False).eval()


@pytest.fixture(scope="module")
def pixels(plain: PromptedClassifier) -> torch.Tensor:
    data = SplitTensors(DATA.splits["val"], plain.input_size, CPU)
    return next(iter(data.batches(len(data))))[0]


def test_pinv_transpose_keeps_shape_and_is_its_own_inverse_at_full_rank() -> None:
    prefixes = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    once = pinv_transpose(prefixes)
    assert once.shape == prefixes.shape
    assert torch.allclose(pinv_transpose(once), prefixes, atol=1e-10)
    # known answer: orthonormal rows scaled by s become the same rows scaled by 1/s
    rows = torch.eye(2, 3, dtype=torch.float64)[None] * torch.tensor([[2.0], [0.5]]).double()
    assert torch.allclose(
        pinv_transpose(rows), torch.eye(2, 3).double()[None] * torch.tensor([[0.5], [2.0]]).double()
    )
    with pytest.raises(ValueError, match="layers, p, d"):
        pinv_transpose(prefixes[0])


def test_prefixes_change_the_output_only_while_their_hooks_are_in(
    plain: PromptedClassifier, pixels: torch.Tensor
) -> None:
    encoder = plain.encoder.get_base_model()
    layers = encoder_layers(encoder)
    prefixes = torch.randn(len(layers), 3, plain.head.in_features)
    with torch.no_grad():
        before = plain(pixels)
        clean = encoder(pixel_values=pixels, output_hidden_states=True).hidden_states
        with deep_prefix(layers, prefixes):
            inside = plain(pixels)
            hidden = encoder(pixel_values=pixels, output_hidden_states=True).hidden_states
        after = plain(pixels)
    assert not torch.allclose(before, inside, atol=1e-4)
    assert torch.equal(before, after)  # exactly: nothing of the prefixes is left behind
    # every block's output keeps the sequence length (transformers records block 0's hooked
    # *input* as hidden_states[0], so that one alone carries the first prefix)
    assert [h.shape for h in hidden[1:]] == [h.shape for h in clean[1:]]
    with pytest.raises(RuntimeError), deep_prefix(layers, prefixes):
        raise RuntimeError("inside")
    with torch.no_grad():
        assert torch.equal(plain(pixels), before)  # removed after an error too
    with pytest.raises(ValueError, match="prefixes must be"), deep_prefix(layers, prefixes[1:]):
        pass


def test_a_prefixed_model_is_its_base_plus_hooks(
    plain: PromptedClassifier, pixels: torch.Tensor
) -> None:
    prefixes = torch.randn(len(encoder_layers(plain.encoder.get_base_model())), 2, 192)
    prefixed = plain.with_prefix(prefixes).eval()
    with torch.no_grad():
        with deep_prefix(encoder_layers(plain.encoder.get_base_model()), prefixes):
            expected = plain(pixels)
        assert torch.equal(prefixed(pixels), expected)
    assert prefixed.spec.prefix_len == 2 and plain.spec.prefix_len == 0
    assert changed_parameters(plain, prefixed) == prefixes.numel()  # added, counted in full


def test_relabelled_objective_pushes_forget_samples_to_uniform() -> None:
    class Fixed(torch.nn.Module):
        num_classes = 4

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([1, 0])
    loss = relabelled_objective((1,), "uniform")(Fixed(), logits, labels, torch.Generator())
    ce = torch.nn.functional.cross_entropy(logits[1:], labels[1:])
    assert torch.allclose(loss, ce / 2)  # uniform output on a forget sample costs nothing
    with pytest.raises(ValueError, match="forget target"):
        relabelled_objective((1,), "zeros")


def test_forget_only_never_receives_a_retain_sample(
    plain: PromptedClassifier, seen_labels: list[int]
) -> None:
    seen = seen_labels
    _, cost = unlearn("pi_prefix_forget_only", plain, (1, 2), DATA.splits["train"], RECIPE, 0)
    assert sorted(seen) == [1, 1, 2, 2] and cost.samples_touched == 4
    assert not cost.needs_retain_data
    seen.clear()
    _, cost = unlearn("pi_prefix", plain, (1, 2), DATA.splits["train"], RECIPE, 0)
    assert sorted(seen) == [0, 0, 1, 1, 2, 2, 3, 3] and cost.needs_retain_data


def test_only_the_prefixes_train_they_are_pinv_transformed_and_the_stage_is_timed(
    plain: PromptedClassifier,
) -> None:
    unlearned, cost = unlearn("pi_prefix", plain, (1,), DATA.splits["train"], RECIPE, 0)
    before, after = dict(plain.state_dict()), unlearned.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # nothing else moved
    assert unlearned.prefixes.shape == (6, 2, 192) and unlearned.prefixes.requires_grad
    assert cost.trainable_params == unlearned.prefixes.numel()
    assert cost.optimizer_steps == 2 and 0 < cost.transform_seconds < cost.unlearn_seconds
    untransformed = pinv_transpose(unlearned.prefixes.detach().double()).float()
    assert torch.linalg.matrix_rank(untransformed).tolist() == [2] * 6
    with pytest.raises(ValueError, match="target must be"):
        unlearn(
            "pi_prefix",
            plain,
            (1,),
            DATA.splits["train"],
            dataclasses.replace(RECIPE, target="zeros"),
            0,
        )


def test_transform_timer_adds_to_running_meters_only() -> None:
    with transform_timer():
        time.sleep(0.001)  # no meter running: nothing to add to
    with Meter() as meter, transform_timer():
        time.sleep(0.01)
    assert 0.01 <= meter.transform_seconds <= meter.seconds


def test_a_prefixed_model_survives_a_checkpoint_round_trip(
    plain: PromptedClassifier, pixels: torch.Tensor, tmp_path: Path
) -> None:
    unlearned, _ = unlearn("pi_prefix", plain, (1,), DATA.splits["train"], RECIPE, 0)
    save_model(unlearned, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt").eval()
    assert loaded.spec.prefix_len == 2 and torch.equal(loaded.prefixes, unlearned.prefixes)
    with torch.no_grad():
        assert torch.equal(loaded(pixels), unlearned(pixels))
