"""What a recovery adversary may change in a model: the capabilities, one registered
object each (``CAPABILITIES``), so the harness (``pfm.attacks.recovery``) never asks a
capability's name what to do.

A capability declares the model family it fits (prompt models or plain ones), what it
changes (parameter name → row mask, ``masks``), whether only the head changes (then the
frozen encoder's head inputs are cached, ``head_only``), the fewest shots it needs, its
budget key in ``attacks.recovery.budget`` (``None``: training-free) and how it changes
them (``run``). The attacked model and its never-seen reference always get the same one.
The trained capabilities are in ``pfm.attacks.relearn``, the training-free prototype
attack in ``pfm.attacks.prototype``.
"""

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated

import torch
from torch import nn

from pfm.attacks.harness import Forward
from pfm.attacks.probes import AdversaryView
from pfm.config import Count, OneOf, Rate
from pfm.models.prompted import PromptedClassifier
from pfm.registry import Registry

if TYPE_CHECKING:  # the params name the registered capabilities: imported the other way
    from pfm.attacks.protocol import RecoveryParams

INITS = ("normal", "zeros")  # a fresh prompt row: N(0, 1) as at training, or zeros
Masks = dict[str, torch.Tensor | None]  # parameter name → rows that move (None: all)


@dataclass(frozen=True)
class Budget:
    """A trained capability's optimisation budget, fixed in advance in params, the same
    for the attacked model and its reference."""

    steps: Count  # full-batch Adam steps
    lr: Rate  # Adam learning rate

    def __post_init__(self) -> None:
        if self.steps < 1 or not self.lr > 0:
            raise ValueError(f"a budget needs steps ≥ 1 and lr > 0, got {self}")


@dataclass(frozen=True)
class Trainable:
    """One parameter the adversary changes: its name in the model, and which rows along
    its first dimension move (``None``: all of it)."""

    name: str
    parameter: nn.Parameter
    rows: torch.Tensor | None


Record = Callable[[int], None]  # scores the attacked copy as it stands after a step


@dataclass(frozen=True)
class Capability(ABC):
    """One registered capability; subclasses say what it changes and how."""

    name: str
    prompted: bool | None  # fits prompt models (True), plain ones (False) or both (None)
    head_only: bool  # nothing before the head changes: its inputs may be cached
    min_shots: int = 0  # the fewest labelled shots per class it needs
    fresh_prompts: bool = False  # adds a fresh prompt row for each class without one

    @property
    def budget_key(self) -> str | None:
        """Its entry in attacks.recovery.budget; ``None``: it trains nothing."""
        return None

    @property
    def knob(self) -> str | None:
        """The one value ``python -m pfm.attacks.calibrate`` picks for it on never-seen
        references before any attack is scored: a trained capability's lr (its steps
        stay as params set them); ``None``: nothing to pick."""
        return None if self.budget_key is None else "lr"

    def with_knob(self, params: "RecoveryParams", value: float) -> "RecoveryParams":
        """``params`` with this capability's knob at ``value``."""
        if self.budget_key is None:
            raise ValueError(f"capability {self.name!r} has no knob to set")
        steps = params.budget_of(self).steps
        return replace(params, budget={**params.budget, self.budget_key: Budget(steps, value)})

    def fits(self, prompted: bool) -> bool:
        return self.prompted is None or self.prompted == prompted

    def applies(self, m: int) -> bool:
        return m >= self.min_shots

    @abstractmethod
    def masks(
        self, model: PromptedClassifier, classes: Sequence[int], adapters: Sequence[str]
    ) -> Masks:
        """Parameter name → the rows this capability changes in ``model``."""

    @abstractmethod
    def run(
        self,
        forward: Forward,
        trained: Sequence[Trainable],
        view: AdversaryView,
        params: "RecoveryParams",
        record: Record,
    ) -> int:
        """Change ``trained`` from what the adversary holds (``view``: no test sample, and
        at m = 0 no forgotten-class sample at all) within what ``params`` allows it,
        calling ``record(step)`` at step 0 and after every step; return the last step
        (the budget's end)."""

    def prepare(
        self,
        model: PromptedClassifier,
        classes: Sequence[int],
        prompt_init: str,
        generator: torch.Generator,
    ) -> tuple[PromptedClassifier, list[Trainable]]:
        """A copy of ``model`` with everything frozen but what this capability changes,
        and those parameters with their row masks. Refuses a model of the other family."""
        if not self.fits(model.spec.with_prompts):
            kind = "a prompt model" if model.spec.with_prompts else "a prompt-free model"
            raise ValueError(f"capability {self.name!r} does not apply to {kind}")
        attacked = copy.deepcopy(model)
        encoder = attacked.encoder.named_parameters()
        adapters = [f"encoder.{n}" for n, p in encoder if p.requires_grad]
        attacked.requires_grad_(False)
        if self.fresh_prompts:
            attacked = with_fresh_prompts(attacked, classes, prompt_init, generator)
        masks = self.masks(attacked, classes, adapters)
        trained = [
            Trainable(name, parameter.requires_grad_(True), masks[name])
            for name, parameter in attacked.named_parameters()
            if name in masks
        ]
        return attacked, trained


CAPABILITIES: Registry[Capability] = Registry("recovery capability")
CapabilityName = Annotated[str, OneOf(CAPABILITIES, "capability")]


def register(capability: Capability) -> Capability:
    """Register ``capability`` under its own name (an error if taken)."""
    return CAPABILITIES.register(capability.name)(capability)


def class_rows(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """The bool mask of ``labels`` (one class id per row) that lie in ``classes``."""
    return torch.isin(labels, torch.tensor(list(classes), device=labels.device))


def head_rows(model: PromptedClassifier, classes: Sequence[int]) -> Masks:
    """The head's weight rows and bias entries of ``classes``."""
    rows = class_rows(torch.arange(model.num_classes, device=model.head.weight.device), classes)
    return {"head.weight": rows, "head.bias": rows}


def with_fresh_prompts(
    model: PromptedClassifier, classes: Sequence[int], init: str, generator: torch.Generator
) -> PromptedClassifier:
    """``model`` with a fresh prompt row for each class of ``classes`` it has none for."""
    for c in classes:
        if c not in model.bank_classes:
            fresh = torch.randn(model.prompts.shape[1:], generator=generator)
            model = model.with_prompt(c, fresh if init == "normal" else torch.zeros_like(fresh))
    return model
