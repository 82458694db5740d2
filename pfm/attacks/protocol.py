"""The recovery attack's protocol, fixed in advance: the ``attacks.recovery`` params.

Every trained capability has its own budget (steps and Adam rate, ``budget.<name>``),
fixed before any attack and applied identically to every attacked model and its
reference. The reported number
is test accuracy at the budget's end; an attack whose retained-class accuracy falls below
``collapse_fraction`` of its pre-attack value is marked collapsed. A dataset may have its
own calibrated budget and prototype weight (``by_dataset``): its attacks run those, so
every row of its table, references included, still runs one budget.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated

from pfm.attacks.capabilities import CAPABILITIES, INITS, Budget, Capability, CapabilityName
from pfm.attacks.probes import OodChoice
from pfm.config import Count, Counts, Natural, Naturals, NonEmpty, OneOf, Share
from pfm.data.modalities import ModalityName
from pfm.data.registry import DatasetName
from pfm.precision import Precision


def check_share(name: str, value: float) -> None:
    """A share of a whole, all of it allowed: (0, 1]."""
    if not 0 < value <= 1:
        raise ValueError(f"{name} must lie in (0, 1], got {value}")


@dataclass(frozen=True)
class DatasetKnobs:
    """The knobs one dataset's attacks calibrate on its own validation split
    (``python -m pfm.attacks.calibrate --data …``): one validation set's pick need not suit
    another's never-seen models, so an entry here replaces the shared one for that dataset
    only; what it leaves out stays shared."""

    budget: Mapping[CapabilityName, Budget] = field(default_factory=dict)
    prototype_weight: Share | None = None  # null: the shared one

    def __post_init__(self) -> None:
        if self.prototype_weight is not None:
            check_share("prototype_weight", self.prototype_weight)


@dataclass(frozen=True)
class RecoveryParams:
    """The ``attacks.recovery`` section of params.yaml."""

    k: Counts  # attack the unlearn stage's draws that forget these many classes
    draws: Count | None  # at most this many draws per k (each costs a reference); null: all
    shots: Naturals  # m labelled shots per forgotten class; 0: data-free
    # registered capabilities; a run gets those that fit its model
    capabilities: Annotated[tuple[CapabilityName, ...], NonEmpty()]
    budget: Mapping[CapabilityName, Budget]  # per trained capability: steps and Adam lr
    eval_every: Count  # steps between points of the relearn curve
    curve_samples: Count  # test forgotten-class samples each curve point is scored on
    collapse_fraction: Share  # retained acc below this share of its pre-attack value: collapse
    prototype_weight: Share  # prototype attack: weight of the shots' prototype in the head row
    relearn_threshold: Share  # test forgotten-class accuracy that counts as relearned
    anchor_shots: Natural  # labelled train samples per retained class, kept at their labels
    noise_inputs: Count  # data-free positives per class and step
    prompt_init: Annotated[str, OneOf(INITS, "prompt init")]  # normal | zeros
    # per modality, the dataset whose test split is the out-of-distribution probe of every
    # attacked dataset of that modality, or a list of them (``ood_dataset``); a modality
    # not listed (or null) has none
    ood_datasets: Mapping[ModalityName, OodChoice]
    ood_samples: Count  # inputs of each specificity probe (noise, OOD)
    batch_size: Count  # evaluation batch
    precision: Precision = "fp32"  # of the attack's steps and scoring: fp32 | bf16
    # per dataset, its own calibrated budget entries and prototype weight (``for_dataset``)
    by_dataset: Mapping[DatasetName, DatasetKnobs] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.k, tuple) or not self.k or min(self.k) < 1:
            raise ValueError(f"k must be a non-empty list of forget-set sizes ≥ 1, got {self.k}")
        unknown = sorted(set(self.capabilities) - set(CAPABILITIES))
        if not self.capabilities or unknown:
            raise ValueError(
                f"capabilities must be a non-empty list of {list(CAPABILITIES)}, "
                f"got {self.capabilities}"
            )
        if self.prompt_init not in INITS:
            raise ValueError(f"prompt_init must be one of {INITS}, got {self.prompt_init!r}")
        if not self.shots or min(self.shots) < 0:
            raise ValueError(f"shots must be a non-empty list of counts ≥ 0, got {self.shots}")
        if self.eval_every < 1 or self.curve_samples < 1:
            raise ValueError("eval_every and curve_samples must be ≥ 1")
        for name, value in (
            ("relearn_threshold", self.relearn_threshold),
            ("collapse_fraction", self.collapse_fraction),
            ("prototype_weight", self.prototype_weight),
        ):
            check_share(name, value)
        if self.anchor_shots < 0 or self.noise_inputs < 1 or self.ood_samples < 1:
            raise ValueError("anchor_shots must be ≥ 0, noise_inputs and ood_samples ≥ 1")
        keys = {CAPABILITIES.get(c).budget_key for c in self.capabilities} - {None}
        missing = sorted(k for k in keys if k not in self.budget)
        if missing:
            raise ValueError(f"budget has no entry for the trained capabilities {missing}")

    def for_dataset(self, name: str) -> "RecoveryParams":
        """The knobs ``name``'s attacks run: the shared ones, with its ``by_dataset`` entries
        in their place."""
        own = self.by_dataset.get(name)
        if own is None:
            return self
        weight = self.prototype_weight if own.prototype_weight is None else own.prototype_weight
        return replace(self, budget={**self.budget, **own.budget}, prototype_weight=weight)

    def capabilities_for(self, prompted: bool) -> tuple[str, ...]:
        """The listed capabilities that fit a model with (or without) prompts."""
        return tuple(c for c in self.capabilities if CAPABILITIES.get(c).fits(prompted))

    def budget_of(self, capability: Capability) -> Budget:
        """``capability``'s budget; an error for a training-free one."""
        if capability.budget_key is None:
            raise ValueError(f"capability {capability.name!r} is training-free: no budget")
        return self.budget[capability.budget_key]
