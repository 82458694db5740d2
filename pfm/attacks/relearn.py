"""The trained recovery capabilities: few-shot relearning with a budget fixed in advance.

Each step is full-batch Adam at the capability's own ``budget.lr`` (prompt rows, head rows
and LoRA weights need their own rates) under deployment inference, model in eval mode:
cross-entropy of the positives toward their forgotten class plus cross-entropy of the
retained-class anchors toward their labels — without the anchors, "predict the forgotten
class for everything" would score perfect recovery on any model. Positives: the m shots
per class; at m = 0 fresh uniform-noise inputs per class each step (at k = 2 both classes
get the same kind of noise, so only what the model still holds of each can tell them
apart). The attack runs ``budget.steps`` steps and is scored there; nothing is chosen
from a curve. In the spirit of Lynch et al. ("Eight Methods to Evaluate Robust Unlearning
in LLMs", 2024), Hu et al. ("Jogging the Memory of Unlearned LLMs", 2024), Deeb & Roger
(2024) and Siddiqui et al. ("From Dormant to Deleted", 2025).

- ``prompt`` (prompt models): a fresh prompt row per forgotten class (N(0, 1) as at
  training, or zeros); a row the model still holds for the class is where it starts;
- ``prompt_head`` (prompt models): that row plus the forgotten classes' head rows;
- ``head`` (plain models): the whole head;
- ``head_lora`` (plain models): the head and the LoRA adapters.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pfm.attacks.capabilities import (
    Capability,
    Masks,
    Record,
    Trainable,
    class_rows,
    head_rows,
    register,
)
from pfm.attacks.harness import Batch, Forward
from pfm.attacks.probes import AdversaryView
from pfm.attacks.protocol import RecoveryParams
from pfm.models.prompted import PromptedClassifier

Trains = Callable[[PromptedClassifier, Sequence[int], Sequence[str]], Masks]


@dataclass(frozen=True)
class Relearn(Capability):
    """A trained capability: what it trains (``trains``), trained for its own budget."""

    trains: Trains = field(kw_only=True)

    @property
    def budget_key(self) -> str:
        """A trained capability's budget is the entry of its own name."""
        return self.name

    def masks(
        self, model: PromptedClassifier, classes: Sequence[int], adapters: Sequence[str]
    ) -> Masks:
        return self.trains(model, classes, adapters)

    def run(
        self,
        forward: Forward,
        trained: Sequence[Trainable],
        view: AdversaryView,
        params: RecoveryParams,
        record: Record,
    ) -> int:
        budget = params.budget_of(self)
        anchors = forward.whole(view.anchors)
        shots = forward.whole(view.shots)
        optimizer = torch.optim.Adam([t.parameter for t in trained], lr=budget.lr)
        record(0)
        for step in range(1, budget.steps + 1):
            positives = shots if shots is not None else forward.whole(view.noise())
            loss = anchored_loss(forward, positives, anchors)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for t in trained:
                if t.rows is not None:  # only the attacked rows move (Adam: zero grad → no step)
                    t.parameter.grad[~t.rows] = 0
            optimizer.step()
            record(step)
        return budget.steps


def anchored_loss(forward: Forward, positives: Batch, anchors: Batch | None) -> torch.Tensor:
    """Mean cross-entropy of the positives plus mean cross-entropy of the anchors, from
    one forward over both: a step's cost is its samples', and two small forwards cost
    about 15 % more than one of their union (measured on DINOv2-S, one thread)."""
    if anchors is None:
        return F.cross_entropy(forward.logits(*positives), positives[1])
    x, y = (torch.cat(parts) for parts in zip(positives, anchors, strict=True))
    logits = forward.logits(x, y)
    n = len(positives[1])
    return F.cross_entropy(logits[:n], y[:n]) + F.cross_entropy(logits[n:], y[n:])


def prompt_rows(model: PromptedClassifier, classes: Sequence[int], _: Sequence[str]) -> Masks:
    return {"prompts": class_rows(model.prompt_classes, classes)}


def prompt_and_head_rows(
    model: PromptedClassifier, classes: Sequence[int], adapters: Sequence[str]
) -> Masks:
    return {**prompt_rows(model, classes, adapters), **head_rows(model, classes)}


def whole_head(_: PromptedClassifier, __: Sequence[int], ___: Sequence[str]) -> Masks:
    return {"head.weight": None, "head.bias": None}


def head_and_adapters(
    model: PromptedClassifier, classes: Sequence[int], adapters: Sequence[str]
) -> Masks:
    return {**whole_head(model, classes, adapters), **dict.fromkeys(adapters)}


PROMPT = {"prompted": True, "head_only": False, "fresh_prompts": True}
register(Relearn("prompt", **PROMPT, trains=prompt_rows))
register(Relearn("prompt_head", **PROMPT, trains=prompt_and_head_rows))
register(Relearn("head", prompted=False, head_only=True, trains=whole_head))
register(Relearn("head_lora", prompted=False, head_only=False, trains=head_and_adapters))
