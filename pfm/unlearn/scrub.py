"""``scrub``: SCalable Remembering and Unlearning unBound (Kurmanji et al., "Towards
Unbounded Machine Unlearning", NeurIPS 2023).

The original model is a frozen teacher; a student starting as its copy solves

    min_s  α/N_r Σ_r d(x_r) + γ/N_r Σ_r CE(s(x_r), y_r) − 1/N_f Σ_f d(x_f),
    d(x) = KL(p_teacher(x) ‖ p_student(x))   (at temperature T, as their distillation)

by alternating epochs: a *max* epoch over the forget data (ascend d, move away from the
teacher there) then a *min* epoch over the retain data (stay with the teacher, fit the
labels). Max epochs run only during the first ``max_epochs`` epochs; the remaining min
epochs repair retained accuracy — the paper's schedule. One Adam optimizer serves both
phases (the paper uses SGD; we use Adam as every other method here).
"""

import copy
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from pfm.config import Choice, Count, LogUniform, Natural, Rate, Weight
from pfm.losses import kl_to_reference
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import Request, method
from pfm.unlearn.data import epochs_of


@dataclass(frozen=True)
class ScrubRecipe:
    epochs: Count  # min epochs over the retain data
    max_epochs: Natural  # of which the first ones are preceded by a max epoch over the forget data
    batch_size: Count
    lr: Annotated[Rate, LogUniform(1e-5, 1e-2)]  # Adam
    alpha: Annotated[Weight, LogUniform(1e-4, 1.0)]  # weight of KL-to-teacher on retain
    gamma: Weight  # weight of cross-entropy on retain
    # of the KL (the authors' distillation temperature)
    temperature: Annotated[Rate, Choice((1.0, 2.0, 4.0, 8.0))]


@method("scrub", recipe=ScrubRecipe, needs_forget=True, needs_retain=True)
def scrub(request: Request[ScrubRecipe]) -> PromptedClassifier:
    model, forget, retain, recipe = request.model, request.forget, request.retain, request.recipe
    teacher = copy.deepcopy(model).eval()
    generator = torch.Generator().manual_seed(request.seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)

    def step(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def divergence(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            reference = teacher(x)
        return kl_to_reference(model(x), reference, recipe.temperature)

    model.train()
    for epoch in range(recipe.epochs):
        if epoch < recipe.max_epochs:
            for x, _ in epochs_of(forget, recipe.batch_size, 1, generator):
                step(-divergence(x))
        for x, y in epochs_of(retain, recipe.batch_size, 1, generator):
            with torch.no_grad():
                reference = teacher(x)
            logits = model(x)
            kl = kl_to_reference(logits, reference, recipe.temperature)
            step(recipe.alpha * kl + recipe.gamma * F.cross_entropy(logits, y))
    model.eval()
    return model
