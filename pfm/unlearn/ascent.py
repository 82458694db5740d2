"""The gradient-ascent family's shared loop: ascend cross-entropy on forget batches,
optionally plus a weighted retain term on a retain batch drawn alongside each one.

Ascending cross-entropy is unbounded — once the forget samples are misclassified, more
ascent only pushes their logits further and drags the shared weights (and retained
accuracy) with them; a too-large learning rate collapses the model within a few steps.
The recipe guards against that with ``stop_at_chance``: the loop stops as soon as a
forget batch's cross-entropy, measured on the forward it computes anyway, reaches
ln C — the loss of the uniform prediction, i.e. the batch is predicted no better than
by chance. An accuracy guard does not do: forgetting several classes at once, ascent
collapses the model onto predicting one of them, so the forget batch stays ~1/k
accurate while the retained classes drop to zero (digits, k = 5; README Baselines).

The budget is ``steps`` batches, cycling the forget data, so it does not grow with the
number of forgotten classes the way passes over the forget data would.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from pfm.config import Count, LogUniform, Rate, Weight
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import Request
from pfm.unlearn.data import endless

RetainLoss = Callable[[PromptedClassifier, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AscentRecipe:
    steps: Count  # forget batches to ascend on, at most (the forget data cycled)
    batch_size: Count
    lr: Annotated[Rate, LogUniform(1e-5, 1e-2)]  # Adam
    stop_at_chance: bool  # stop once a forget batch's cross-entropy reaches ln C


@dataclass(frozen=True)
class RegularisedAscentRecipe(AscentRecipe):
    # weight of the retain term against the ascent term
    retain_weight: Annotated[Weight, LogUniform(0.1, 10.0)]


def gradient_ascent(
    request: Request[AscentRecipe],
    retain_loss: RetainLoss | None = None,
    retain_weight: float = 0.0,
) -> PromptedClassifier:
    """Adam on −CE(forget batch) [+ ``retain_weight`` · ``retain_loss``(retain batch)]:
    the request's model, trained in place."""
    model, forget, retain, recipe = request.model, request.forget, request.retain, request.recipe
    if (retain_loss is None) != (retain is None):
        raise ValueError("a retain term needs retain data and retain data needs a retain term")
    generator = torch.Generator().manual_seed(request.seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    forget_batches = endless(forget, recipe.batch_size, generator)
    retain_batches = endless(retain, recipe.batch_size, generator) if retain is not None else None
    chance = math.log(model.num_classes)
    model.train()
    for _ in range(recipe.steps):
        x, y = next(forget_batches)
        forget_loss = F.cross_entropy(model(x), y)
        if recipe.stop_at_chance and float(forget_loss.detach()) >= chance:
            break
        loss = -forget_loss
        if retain_batches is not None and retain_loss is not None:
            loss = loss + retain_weight * retain_loss(model, *next(retain_batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return model
