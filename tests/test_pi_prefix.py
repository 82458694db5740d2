"""PI-Prefix: prefix keys and values in every attention layer (the exact attention, every
backbone, nothing left behind), the authors' pseudo-inverse per matrix and its involution,
what the transform does to a trained model, the two ways it is scored (the authors'
inference as the headline, the artifact beside it), the forget-only variant's data, the
cost split and the checkpoint round trip."""

import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn
from transformers import Dinov2Config, Dinov2Model

import pfm.unlearn.pi_prefix as pi_prefix_module
from pfm.batches import MarkedBatch, SplitTensors
from pfm.cost import CostRecord, Meter, changed_parameters, transform_timer
from pfm.evaluate import forget_k, forget_plan, split_accuracies
from pfm.losses import Objective, random_label_objective, relabelled_objective
from pfm.models.backbones import encoder_layers
from pfm.models.checkpoint import load_model, save_model
from pfm.models.prefix import KEYS, VALUES, deep_prefix
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn import METHODS, unlearn, unlearner
from pfm.unlearn.manifest import keeping
from pfm.unlearn.pi_prefix import PrefixRecipe, pinv_transpose, pseudo_inverted, scored_artifact
from tests.conftest import make_model, toy_dataset
from tests.test_convert import TINY_BINS, tiny_encoder

CPU = torch.device("cpu")
DATA = toy_dataset(num_classes=4, per_class=2)
RECIPE = PrefixRecipe(epochs=1, batch_size=4, lr=0.01, prefix_len=2, target="uniform")
LAYERS, WIDTH = 6, 192  # vit-tiny
INPUTS = {  # backbone → one sample's shape, as batches carry it
    "vit-tiny": (3, 16, 16),
    "ast-tiny": (100, 128),
    "whisper": (10, TINY_BINS),
    "dinov2": (3, 16, 16),
}


Transforms = list[tuple[torch.Tensor, torch.Tensor]]  # every (input, output) of the transform


class Trained(NamedTuple):
    """A ``pi_prefix`` run, with the prefixes its two transforms received and returned."""

    model: PromptedClassifier  # the headline: the artifact transformed back
    cost: CostRecord
    trained: torch.Tensor  # (layers, 2, p, d) as trained
    artifact: torch.Tensor  # stage (2)'s output, what the authors save
    headline: torch.Tensor  # the inference-time transform's output


def recording(calls: Transforms) -> Callable[[torch.Tensor], torch.Tensor]:
    """``pinv_transpose`` that also appends each (input, output) to ``calls``."""

    def transform(prefixes: torch.Tensor) -> torch.Tensor:
        out = pinv_transpose(prefixes)
        calls.append((prefixes.detach().clone(), out.detach().clone()))
        return out

    return transform


@pytest.fixture(scope="module")
def plain() -> PromptedClassifier:
    return make_model(with_prompts=False).eval()


@pytest.fixture(scope="module")
def pixels(plain: PromptedClassifier) -> torch.Tensor:
    data = SplitTensors(DATA.splits["val"], plain.input_size, CPU)
    return next(iter(data.batches(len(data))))[0]


@pytest.fixture(scope="module")
def trained(plain: PromptedClassifier) -> Trained:
    calls: Transforms = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pi_prefix_module, "pinv_transpose", recording(calls))
        model, cost = unlearn("pi_prefix", plain, (1,), DATA.splits["train"], RECIPE, 0)
    ((as_trained, artifact), (loaded, headline)) = calls  # stage (2), then the inference's
    assert torch.equal(loaded, artifact)
    return Trained(model.eval(), cost, as_trained, artifact, headline)


@pytest.fixture(scope="module")
def saved_backbones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Backbones the registry lacks, random and tiny, saved where ``build_model`` loads."""
    folder = tmp_path_factory.mktemp("backbones")
    tiny_encoder().save_pretrained(folder / "whisper")
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=16,
        patch_size=4,
    )
    torch.manual_seed(0)
    Dinov2Model(config).save_pretrained(folder / "dinov2")
    return {"whisper": str(folder / "whisper"), "dinov2": str(folder / "dinov2")}


def reference_attention(
    attention: nn.Module, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """softmax(q [K_p ; W_k h]ᵀ / √d_h) [V_p ; W_v h] per head, by hand, then the output
    projection: prefix tuning's attention, written out."""
    batch, heads = hidden.shape[0], attention.num_attention_heads

    def split(rows: torch.Tensor) -> torch.Tensor:  # (b, t, d) → (b, H, t, d/H)
        return rows.view(batch, rows.shape[1], heads, -1).transpose(1, 2)

    query = split(attention.q_proj(hidden))
    key = split(torch.cat([keys.expand(batch, -1, -1), attention.k_proj(hidden)], dim=1))
    value = split(torch.cat([values.expand(batch, -1, -1), attention.v_proj(hidden)], dim=1))
    weights = torch.softmax(query @ key.transpose(-1, -2) / query.shape[-1] ** 0.5, dim=-1)
    return attention.o_proj((weights @ value).transpose(1, 2).reshape(hidden.shape))


def test_pinv_transpose_is_the_authors_map_per_matrix_and_an_involution() -> None:
    prefixes = torch.randn(3, 2, 4, 6, generator=torch.Generator().manual_seed(0)).double()
    once = pinv_transpose(prefixes)
    assert once.shape == prefixes.shape
    for layer in range(3):
        for kind in (KEYS, VALUES):  # each (p × d) matrix by itself, as np.linalg.pinv(P).T
            expected = np.linalg.pinv(prefixes[layer, kind].numpy()).T
            assert np.allclose(once[layer, kind].numpy(), expected, atol=1e-12)
    # known answer: orthonormal rows scaled by s become the same rows scaled by 1/s
    rows = torch.eye(2, 3).double() * torch.tensor([[2.0], [0.5]]).double()
    flipped = torch.eye(2, 3).double() * torch.tensor([[0.5], [2.0]]).double()
    assert torch.allclose(pinv_transpose(rows.expand(1, 2, 2, 3))[0, 1], flipped)
    # an involution at any rank: a repeated row stays repeated, and comes back
    deficient = prefixes.clone()
    deficient[:, :, 1] = deficient[:, :, 0]
    assert torch.allclose(pinv_transpose(pinv_transpose(deficient)), deficient, atol=1e-10)
    single = prefixes.float() * 5  # float32 prefixes come back to their own rounding
    assert torch.allclose(pinv_transpose(pinv_transpose(single)), single, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="layers, 2, p, d"):
        pinv_transpose(prefixes[:, 0])


def test_attention_runs_over_prefix_keys_and_values_after_the_projections(
    plain: PromptedClassifier,
) -> None:
    """Block 0's attention is exactly prefix tuning's, LoRA's share of the projections
    included; the queries, and so the output positions, stay as they are."""
    model = copy.deepcopy(plain)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # peft starts B at 0: give LoRA a share to keep
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    backbone = model.backbone
    attention = next(m for m in encoder_layers(backbone)[0].modules() if hasattr(m, "k_proj"))
    hidden = torch.randn(2, 17, WIDTH, generator=generator)
    prefixes = torch.randn(LAYERS, 2, 3, WIDTH, generator=generator)
    with torch.no_grad():
        expected = reference_attention(attention, hidden, prefixes[0, KEYS], prefixes[0, VALUES])
        with deep_prefix(backbone, prefixes):
            out = attention(hidden)[0]
        assert not torch.allclose(attention.v_proj(hidden), attention.v_proj.base_layer(hidden))
    assert out.shape == hidden.shape
    assert torch.allclose(out, expected, atol=1e-5)


def test_prefixes_change_the_output_only_while_their_hooks_are_in(
    plain: PromptedClassifier, pixels: torch.Tensor
) -> None:
    encoder = plain.backbone
    prefixes = torch.randn(len(encoder_layers(encoder)), 2, 3, WIDTH)
    with torch.no_grad():
        before = plain(pixels)
        clean = encoder(pixel_values=pixels, output_hidden_states=True).hidden_states
        with deep_prefix(encoder, prefixes):
            inside = plain(pixels)
            hidden = encoder(pixel_values=pixels, output_hidden_states=True).hidden_states
        after = plain(pixels)
    assert not torch.allclose(before, inside, atol=1e-4)
    assert torch.equal(before, after)  # exactly: nothing of the prefixes is left behind
    assert encoder.config._attn_implementation == "sdpa"  # the backbone's own, back
    # no block's sequence grows; block 0's input is untouched, its output is not
    assert [h.shape for h in hidden] == [h.shape for h in clean]
    assert torch.equal(hidden[0], clean[0]) and not torch.allclose(hidden[1], clean[1])
    with pytest.raises(RuntimeError, match="inside"), deep_prefix(encoder, prefixes):
        raise RuntimeError("inside")
    with torch.no_grad():
        assert torch.equal(plain(pixels), before)  # removed after an error too
    with pytest.raises(ValueError, match="prefixes must be"), deep_prefix(encoder, prefixes[1:]):
        pass
    with pytest.raises(ValueError, match="prefixes must be"), deep_prefix(encoder, prefixes[:, 0]):
        pass


@pytest.mark.parametrize("name", list(INPUTS))
def test_every_backbone_attends_to_prefix_keys_and_values(
    name: str, saved_backbones: dict[str, str]
) -> None:
    """ViT, AST and DINOv2 lay keys out by the query length, Whisper by the heads: the
    prefixes enter after both, and no block's output grows."""
    backbone = saved_backbones.get(name, name)
    prefixed = make_model(num_classes=3, backbone=backbone, prefix_len=2).eval()
    base = make_model(num_classes=3, backbone=backbone).eval()  # the same, without them
    x = torch.randn(1, *INPUTS[name], generator=torch.Generator().manual_seed(0))
    lengths: list[int] = []

    def record(_module: nn.Module, _args: tuple, output: object) -> None:
        lengths.append((output[0] if isinstance(output, tuple) else output).shape[1])

    logits = []
    with torch.no_grad():
        for model in (prefixed, base):
            hook = encoder_layers(model.backbone)[-1].register_forward_hook(record)
            logits.append(model(x))
            hook.remove()
        with deep_prefix(base.backbone, prefixed.prefixes):
            hooked = base(x)
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)
    assert torch.equal(hooked, logits[0]) and lengths[0] == lengths[1]
    assert base.backbone.config._attn_implementation == "sdpa"


def test_a_prefixed_model_is_its_base_plus_hooks(
    plain: PromptedClassifier, pixels: torch.Tensor
) -> None:
    prefixes = torch.randn(LAYERS, 2, 2, WIDTH)
    prefixed = plain.with_prefix(prefixes).eval()
    with torch.no_grad():
        with deep_prefix(plain.backbone, prefixes):
            expected = plain(pixels)
        assert torch.equal(prefixed(pixels), expected)
    assert prefixed.spec.prefix_len == 2 and plain.spec.prefix_len == 0
    assert changed_parameters(plain, prefixed) == prefixes.numel()  # added, counted in full
    with pytest.raises(ValueError, match="prefix_len"):
        PromptedClassifier(**{**constructor_args(prefixed), "prefixes": prefixes[:, 0]})


def constructor_args(model: PromptedClassifier) -> dict[str, object]:
    """The constructor arguments ``model`` was built from."""
    return {
        "spec": model.spec,
        "encoder": model.encoder,
        "head": model.head,
        "prompts": model.prompts.detach(),
        "prompt_classes": model.prompt_classes,
        "masked": model.masked,
        "input_size": model.input_size,
        "embeddings_attr": model.embeddings_attr,
    }


class Fixed(torch.nn.Module):
    """A 4-class "model" whose logits are its inputs."""

    num_classes = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_relabelled_objective_pushes_forget_rows_to_uniform() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([1, 0])
    batch = MarkedBatch(logits, labels, torch.tensor([True, False]))
    loss = relabelled_objective("uniform")(Fixed(), batch, torch.Generator())
    ce = torch.nn.functional.cross_entropy(logits[1:], labels[1:])
    assert torch.allclose(loss, ce / 2)  # uniform output on a forget row costs nothing
    with pytest.raises(ValueError, match="forget target"):
        relabelled_objective("zeros")


@pytest.mark.parametrize("objective", [relabelled_objective("uniform"), random_label_objective()])
def test_the_forget_objectives_read_the_rows_marks_not_their_labels(objective: Objective) -> None:
    """Two rows of one class, one marked forget: a forget set of samples, not of classes.
    The marked row alone is relabelled; unmarked rows cost their plain cross-entropy; a
    batch without marks is refused."""
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 0])
    marks = torch.tensor([True, False])
    loss = objective(Fixed(), MarkedBatch(logits, labels, marks), torch.Generator().manual_seed(0))
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    forget_term = loss * 2 - ce[1]  # the marked row's term, the batch mean undone
    assert forget_term > ce[0] + 1.0  # a wrong label or uniform: far dearer than its own
    unmarked = MarkedBatch(logits, labels, torch.tensor([False, False]))
    assert torch.allclose(objective(Fixed(), unmarked, torch.Generator()), ce.mean())
    with pytest.raises(ValueError, match="forget-marked"):
        objective(Fixed(), MarkedBatch(logits, labels), torch.Generator())


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


def test_only_the_prefixes_train_the_authors_transform_follows_and_is_timed(
    plain: PromptedClassifier, trained: Trained
) -> None:
    unlearned, cost = trained.model, trained.cost
    before, after = dict(plain.state_dict()), unlearned.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # nothing else moved
    assert unlearned.prefixes.shape == (LAYERS, 2, 2, WIDTH) and unlearned.prefixes.requires_grad
    init = torch.randn(LAYERS, 2, 2, WIDTH, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(trained.trained, init)  # the prefixes did train
    assert cost.trainable_params == unlearned.prefixes.numel()
    assert cost.optimizer_steps == 2 and 0 < cost.transform_seconds < cost.unlearn_seconds
    assert torch.equal(unlearned.prefixes.detach(), trained.headline)
    for layer in range(LAYERS):
        for kind in (KEYS, VALUES):  # K_p[l] ← pinv(K_p[l])ᵀ, V_p[l] ← pinv(V_p[l])ᵀ
            expected = np.linalg.pinv(trained.trained[layer, kind].double().numpy()).T
            assert np.allclose(trained.artifact[layer, kind].numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="target must be"):
        unlearn(
            "pi_prefix",
            plain,
            (1,),
            DATA.splits["train"],
            dataclasses.replace(RECIPE, target="zeros"),
            0,
        )


def test_the_headline_is_the_trained_prefixes_and_the_artifact_their_pinv(
    plain: PromptedClassifier, trained: Trained, pixels: torch.Tensor
) -> None:
    """The authors' inference applies the transform to the artifact they save: what it
    evaluates, our headline, is the prefixes as trained; the artifact, scored beside it,
    is pinv(trained)ᵀ, recovered from the headline by the same involution."""
    headline = trained.model
    assert torch.allclose(headline.prefixes, trained.trained, rtol=1e-5, atol=1e-6)
    artifact = scored_artifact(headline)["artifact"].eval()
    assert torch.allclose(artifact.prefixes, trained.artifact, rtol=1e-4, atol=1e-8)
    expected = np.linalg.pinv(trained.trained.double().numpy()).transpose(0, 1, 3, 2)
    assert np.allclose(artifact.prefixes.detach().numpy(), expected, rtol=1e-4, atol=1e-8)
    assert torch.equal(headline.prefixes.detach(), trained.headline)  # input untouched
    assert artifact.spec == headline.spec
    with torch.no_grad():
        as_trained = plain.with_prefix(trained.trained).eval()(pixels)
        assert torch.allclose(headline(pixels), as_trained, atol=1e-5)
        as_saved = plain.with_prefix(trained.artifact).eval()(pixels)
        assert torch.allclose(artifact(pixels), as_saved, atol=1e-5)
    with pytest.raises(ValueError, match="no deep prefixes"):
        pseudo_inverted(plain)


def test_both_ways_are_scored_and_the_headline_is_saved(
    plain: PromptedClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unlearn stage's path (``forget_k`` over ``keeping``, with the method's declared
    variants): the plain keys score the headline, ``artifact.*`` the artifact, on test and
    validation alike, and the file the attack stage loads holds the headline."""
    calls: Transforms = []
    monkeypatch.setattr(pi_prefix_module, "pinv_transpose", recording(calls))
    test, val = (SplitTensors(DATA.splits[s], plain.input_size, CPU) for s in ("test", "val"))
    draws: list[dict] = []
    run = keeping(unlearner("pi_prefix", plain, DATA.splits["train"], RECIPE, 0), tmp_path, draws)
    variants = METHODS.get("pi_prefix").variants
    metrics = forget_k(run, test, forget_plan(4, [1], 1, seed=0), 0, 16, val, variants)
    # stage (2), the inference's transform, then the artifact's recovery for scoring
    ((as_trained, _), (_, headline), (_, artifact)) = calls
    (unit,) = metrics["units"]
    classes = tuple(unit["classes"])

    def scores(prefixes: torch.Tensor, data: SplitTensors) -> tuple[float, float]:
        return split_accuracies(plain.with_prefix(prefixes).eval(), data, classes, 0, 16)

    assert (unit["forget_acc"], unit["retain_acc"]) == scores(headline, test)
    assert (unit["val.forget_acc"], unit["val.retain_acc"]) == scores(headline, val)
    assert (unit["artifact.forget_acc"], unit["artifact.retain_acc"]) == scores(artifact, test)
    assert (unit["artifact.val.forget_acc"], unit["artifact.val.retain_acc"]) == scores(
        artifact, val
    )
    assert torch.allclose(headline, as_trained, rtol=1e-5, atol=1e-6)
    assert torch.equal(load_model(tmp_path / draws[0]["model"]).prefixes, headline)
    assert {"k1.artifact.forget_acc.mean", "k1.artifact.val.retain_acc.std"} <= set(metrics)


def test_the_transform_is_not_a_no_op(
    plain: PromptedClassifier, trained: Trained, pixels: torch.Tensor
) -> None:
    """Each prefix matrix's singular values are inverted (σ ≈ √d = 14 → 1/σ), and with
    keys and values entering attention raw, that reaches the logits: the transform moves
    them as far as training the prefixes had moved them from the base model. (Prefixes in
    token space went through each block's pre-layernorm, which removes that scale: there
    the logits before and after the transform nearly coincided.)"""
    sigma = torch.linalg.svdvals(trained.trained.double())
    inverted = torch.linalg.svdvals(trained.artifact.double())
    assert torch.allclose(inverted, 1 / sigma.flip(-1), rtol=1e-4)
    assert sigma.min() > 5  # so the keys and values shrank more than 25-fold
    with torch.no_grad():
        base = plain(pixels)
        before = trained.model(pixels)  # the headline: the prefixes as trained
        after = scored_artifact(trained.model)["artifact"].eval()(pixels)
    moved_by_training = (before - base).norm()
    assert moved_by_training > 1e-3
    assert (after - before).norm() > 0.5 * moved_by_training


def test_transform_timer_adds_to_running_meters_only() -> None:
    with transform_timer():
        time.sleep(0.001)  # no meter running: nothing to add to
    with Meter() as meter, transform_timer():
        time.sleep(0.01)
    assert 0.01 <= meter.transform_seconds <= meter.seconds


def test_a_prefixed_model_survives_a_checkpoint_round_trip(
    trained: Trained, pixels: torch.Tensor, tmp_path: Path
) -> None:
    save_model(trained.model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt").eval()
    assert loaded.spec.prefix_len == 2 and torch.equal(loaded.prefixes, trained.model.prefixes)
    with torch.no_grad():
        assert torch.equal(loaded(pixels), trained.model(pixels))
