"""The gradient-ascent family's shared loop: ascend cross-entropy on forget batches,
optionally plus a weighted retain term on a retain batch drawn alongside each one.

Ascending cross-entropy is unbounded — once the forget samples are misclassified, more
ascent only pushes their logits further and drags the shared weights (and retained
accuracy) with them; a too-large learning rate collapses the model within a few steps.
The recipe guards against that with ``stop_forget_acc``: the loop stops as soon as a
forget batch's accuracy, measured on the forward it computes anyway, is at or below it.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.data import CountedSplit, endless, epochs_of

RetainLoss = Callable[[PromptedClassifier, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AscentRecipe:
    epochs: int  # passes over the forget data, at most
    batch_size: int
    lr: float  # Adam
    stop_forget_acc: float | None  # stop once a forget batch is this accurate; null: never


@dataclass(frozen=True)
class RegularisedAscentRecipe(AscentRecipe):
    retain_weight: float  # weight of the retain term against the ascent term


def gradient_ascent(
    model: PromptedClassifier,
    forget: CountedSplit,
    retain: CountedSplit | None,
    recipe: AscentRecipe,
    seed: int,
    retain_loss: RetainLoss | None = None,
    retain_weight: float = 0.0,
) -> PromptedClassifier:
    """Adam on −CE(forget batch) [+ ``retain_weight`` · ``retain_loss``(retain batch)]."""
    if (retain_loss is None) != (retain is None):
        raise ValueError("a retain term needs retain data and retain data needs a retain term")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    retain_batches = endless(retain, recipe.batch_size, generator) if retain is not None else None
    model.train()
    for x, y in epochs_of(forget, recipe.batch_size, recipe.epochs, generator):
        logits = model(x)
        accuracy = float((logits.argmax(dim=1) == y).float().mean())
        if recipe.stop_forget_acc is not None and accuracy <= recipe.stop_forget_acc:
            break
        loss = -F.cross_entropy(logits, y)
        if retain_batches is not None and retain_loss is not None:
            loss = loss + retain_weight * retain_loss(model, *next(retain_batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return model
