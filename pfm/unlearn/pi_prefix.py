"""``pi_prefix`` and ``pi_prefix_forget_only``: pseudo-inverse prefix tuning (PI-Prefix,
Gurumurthy & Srijith, CIKM 2025).

Two stages on a frozen classifier. (1) Deep prefixes (``pfm.models.prefix``: p tokens per
encoder block, ours in token space where the paper's are raw K/V tensors) are trained
— nothing else moves — so that forget samples meet an uninformative target (``uniform``:
KL to uniform, or ``random_label``) and, in ``pi_prefix``, retain samples keep their true
label. (2) Each layer's (p × d) prefix is replaced by its transposed Moore–Penrose
pseudo-inverse, P ← pinv(P)ᵀ, which keeps its row and column spaces and inverts its
singular values (σ → 1/σ). The authors' code trains on retain data (``pi_prefix``); their
README says no retain data is needed (``pi_prefix_forget_only``, which never receives a
retain sample), so the suite runs both and the report settles it. Stage (2) is timed
apart (``transform_seconds``), as the paper reports per-stage run times.
"""

from dataclasses import dataclass

import torch

from pfm.cost import transform_timer
from pfm.losses import FORGET_TARGETS, relabelled_objective
from pfm.models.backbones import encoder_layers
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import TrainRecipe, fit, method
from pfm.unlearn.data import CountedSplit, join


@dataclass(frozen=True)
class PrefixRecipe(TrainRecipe):
    prefix_len: int  # p: prefix tokens per encoder block
    target: str = "uniform"  # forget samples' target: uniform | random_label


def pinv_transpose(prefixes: torch.Tensor) -> torch.Tensor:
    """(layers, p, d) → (layers, p, d): each layer's matrix P replaced by pinv(P)ᵀ."""
    if prefixes.dim() != 3:
        raise ValueError(f"prefixes must be (layers, p, d), got {tuple(prefixes.shape)}")
    return torch.linalg.pinv(prefixes).transpose(-2, -1)


def pi_prefix_tuning(
    model: PromptedClassifier,
    classes: tuple[int, ...],
    data: CountedSplit,
    recipe: PrefixRecipe,
    seed: int,
) -> PromptedClassifier:
    """Train fresh deep prefixes on ``data`` with every other weight frozen, then replace
    them by their transposed pseudo-inverses."""
    if recipe.prefix_len < 1:
        raise ValueError(f"prefix_len must be ≥ 1, got {recipe.prefix_len}")
    if recipe.target not in FORGET_TARGETS:
        raise ValueError(f"target must be one of {FORGET_TARGETS}, got {recipe.target!r}")
    layers = len(encoder_layers(model.encoder.get_base_model()))
    width = model.head.in_features
    generator = torch.Generator().manual_seed(seed)
    init = torch.randn(layers, recipe.prefix_len, width, generator=generator)
    prefixed = model.with_prefix(init.to(model.head.weight.device))
    trainable = [p for p in prefixed.parameters() if p.requires_grad]
    for param in trainable:  # the backbone, adapters and head stay as they are
        param.requires_grad_(False)
    prefixed.prefixes.requires_grad_(True)
    try:
        fit(prefixed, relabelled_objective(classes, recipe.target), data, recipe, seed)
    finally:
        for param in trainable:
            param.requires_grad_(True)
    with transform_timer(), torch.no_grad():
        prefixed.prefixes.copy_(pinv_transpose(prefixed.prefixes))
    return prefixed


@method("pi_prefix", recipe=PrefixRecipe, needs_forget=True, needs_retain=True)
def pi_prefix(
    model: PromptedClassifier,
    classes: tuple[int, ...],
    forget: CountedSplit,
    retain: CountedSplit,
    recipe: PrefixRecipe,
    seed: int,
) -> PromptedClassifier:
    """As the authors' code: prefixes trained on forget (relabelled) ∪ retain (true)."""
    return pi_prefix_tuning(model, classes, join(forget, retain), recipe, seed)


@method("pi_prefix_forget_only", recipe=PrefixRecipe, needs_forget=True, needs_retain=False)
def pi_prefix_forget_only(
    model: PromptedClassifier,
    classes: tuple[int, ...],
    forget: CountedSplit,
    retain: CountedSplit | None,
    recipe: PrefixRecipe,
    seed: int,
) -> PromptedClassifier:
    """As the authors' README claims: prefixes trained on the relabelled forget data only."""
    return pi_prefix_tuning(model, classes, forget, recipe, seed)
