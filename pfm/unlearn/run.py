"""The one path from a forget request to an unlearned model and its cost, for every method.

``unlearn`` slices the train split into forget (the rows the request's ``ForgetSet``
marks: its classes' samples, or its rows) and retain (the rest), hands the method a
``Request`` (``pfm.unlearn.base``) holding only the handles it declares (``None``
otherwise) and a deep copy of the input model (which stays untouched), and measures the
call: seconds and optimizer steps (``pfm.cost.Meter``, with the seconds of any
closed-form stage), samples read (the handles' shared tally) and parameter elements
changed. Copying and slicing happen outside the timed region. ``precision`` runs the
method under ``pfm.precision.autocast``: the training loop, the ascent and SCRUB loops
and SSD's importances alike, with no method reading it.
"""

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch

from pfm.config import Count, Counts, NonEmpty, from_mapping
from pfm.cost import CostRecord, Meter, changed_parameters
from pfm.data.prepared import Split
from pfm.evaluate import Unlearner, k_values
from pfm.forget_sets import ForgetSet
from pfm.models.prompted import PromptedClassifier
from pfm.precision import Precision, autocast
from pfm.unlearn.base import METHODS, Request, serving
from pfm.unlearn.data import CountedSplit, Tally, row_slice


@dataclass(frozen=True)
class UnlearnParams:
    """The ``unlearn`` section's own keys; every other key is a method's recipe."""

    # forget sets per k, every method alike: one cap, or one per k of ``k``; null: all
    max_sets: Count | None | Annotated[tuple[Count | None, ...], NonEmpty()]
    k: Counts | None = None  # null: the protocol's {1, ⌊C/2⌋, C−1}
    batch_size: Count = 256  # evaluation batch
    precision: Precision = "fp32"  # fp32 | bf16: unlearning and its scoring (pfm.precision)

    def ks(self, num_classes: int) -> list[int]:
        """The forget-set sizes to run: ``k``, or the protocol's {1, ⌊C/2⌋, C−1}."""
        return list(self.k) if self.k is not None else k_values(num_classes)


def unlearn_params(values: Mapping[str, Any]) -> UnlearnParams:
    """The ``unlearn`` section's shared keys (every key that names no method)."""
    shared = {key: value for key, value in values.items() if key not in METHODS}
    return from_mapping(UnlearnParams, shared, "unlearn")


def read_params(values: Mapping[str, Any], name: str) -> tuple[UnlearnParams, Any]:
    """Validate the ``unlearn`` section (every recipe in it) and return the shared keys
    and method ``name``'s recipe."""
    recipes = {key: value for key, value in values.items() if key in METHODS}
    params = unlearn_params(values)
    parsed = {
        key: from_mapping(METHODS.get(key).recipe, value or {}, f"unlearn.{key}")
        for key, value in recipes.items()
    }
    METHODS.get(name)  # an unknown name raises, listing the valid ones
    if name not in parsed:
        raise KeyError(f"params has no recipe unlearn.{name}; recipes: {sorted(parsed)}")
    return params, parsed[name]


def _forget_set(what: ForgetSet | Iterable[int], name: str) -> ForgetSet:
    """The request as a ``ForgetSet`` (a bare iterable names classes), refused when
    method ``name`` does not serve its kind."""
    forget_set = what if isinstance(what, ForgetSet) else ForgetSet.of_classes(what)
    serves = METHODS.get(name).serves
    if forget_set.kind not in serves:
        raise ValueError(
            f"{name} forgets {' or '.join(serves)} only, not {forget_set.kind}; "
            f"methods that forget {forget_set.kind}: {serving(forget_set.kind)}"
        )
    return forget_set


def unlearn(
    name: str,
    model: PromptedClassifier,
    what: ForgetSet | Iterable[int],
    train: Split | None,
    recipe: Any,
    seed: int,
    precision: str = "fp32",
) -> tuple[PromptedClassifier, CostRecord]:
    """Method ``name`` applied to a copy of ``model`` for forgetting ``what`` (a
    ``ForgetSet``, or class ids), at ``precision``."""
    spec = METHODS.get(name)
    if not isinstance(recipe, spec.recipe):
        raise ValueError(f"{name} needs a {spec.recipe.__name__} recipe, got {recipe!r}")
    if model.spec.with_prompts != (spec.base == "prompt"):
        kind = "a prompt" if spec.base == "prompt" else "a plain (prompt-free)"
        raise ValueError(f"{name} starts from {kind} model, got another kind")
    forget_set = _forget_set(what, name)
    if train is None and (spec.needs_forget or spec.needs_retain or forget_set.kind != "classes"):
        raise ValueError(f"{name} needs training data, none was given")
    forget_set.check(model.num_classes, 0 if train is None else len(train.labels))
    device = next(model.parameters()).device
    tally = Tally()

    def handle(keep: bool) -> CountedSplit:
        rows = row_slice(train, forget_set.mask(train.labels), keep)
        return CountedSplit(rows, model.input_size, device, tally, forget=keep)

    forget = handle(keep=True) if spec.needs_forget else None
    retain = handle(keep=False) if spec.needs_retain else None
    request = Request(copy.deepcopy(model), forget_set, forget, retain, recipe, seed)
    with torch.random.fork_rng(devices=[]), autocast(device, precision), Meter() as meter:
        torch.manual_seed(seed)  # dropout etc.: every method seed-deterministic, caller unaffected
        unlearned = spec.run(request)
    unlearned.eval()
    return unlearned, CostRecord(
        unlearn_seconds=meter.seconds,
        optimizer_steps=meter.steps,
        samples_touched=tally.samples,
        needs_forget_data=spec.needs_forget,
        needs_retain_data=spec.needs_retain,
        trainable_params=changed_parameters(model, unlearned),
        transform_seconds=meter.transform_seconds,
    )


def unlearner(
    name: str,
    model: PromptedClassifier,
    train: Split | None,
    recipe: Any,
    seed: int,
    precision: str = "fp32",
) -> Unlearner:
    """``classes → (unlearned model, cost)`` for method ``name``: what ``forget_k`` calls."""

    def run(classes: tuple[int, ...]) -> tuple[PromptedClassifier, CostRecord]:
        return unlearn(name, model, classes, train, recipe, seed, precision)

    return run
