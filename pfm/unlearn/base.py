"""The unlearning-method family: one request, one registry, the shared training helper.

Every method is a function ``(Request) -> unlearned model``, registered with what it
needs: forget data, retain data (the request's handle is ``None`` when not declared —
the runner enforces it), the base model it starts from (``plain``: the classifier
without prompts; ``prompt``: the pre-forgettable model) and its recipe dataclass,
filled from ``params.yaml`` under the method's name. Timing, step and sample counting
happen around the call (``pfm.unlearn.run``), never inside it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pfm.config import Count, OneOf, Rate
from pfm.evaluate import Variants
from pfm.losses import Objective
from pfm.models.prompted import PromptedClassifier
from pfm.registry import Registry
from pfm.train import TrainConfig, train
from pfm.unlearn.data import CountedSplit

BASES = ("prompt", "plain")

R = TypeVar("R")  # a method's recipe dataclass


@dataclass(frozen=True)
class Request(Generic[R]):
    """One unlearning call: forget ``classes`` from ``model``.

    ``model`` is a private copy of the caller's model: the method may change it in place
    and return it (or return another model). ``forget`` and ``retain`` hold the train
    split's samples of the forgotten classes and of the rest; each is ``None`` unless the
    method declares it needs it, so a method cannot read what it was not given."""

    model: PromptedClassifier
    classes: tuple[int, ...]  # sorted, distinct, 1..C−1 of them
    forget: CountedSplit | None
    retain: CountedSplit | None
    recipe: R
    seed: int


MethodFn = Callable[[Request[Any]], PromptedClassifier]


@dataclass(frozen=True)
class Method:
    run: MethodFn
    recipe: type
    needs_forget: bool
    needs_retain: bool
    base: str
    variants: Variants | None = None  # other versions of its output worth scoring


METHODS: Registry[Method] = Registry("unlearning method")
MethodName = Annotated[str, OneOf(METHODS)]  # a params field naming a method


def method(
    name: str,
    *,
    recipe: type,
    needs_forget: bool,
    needs_retain: bool,
    base: str = "plain",
    variants: Variants | None = None,
) -> Callable[[MethodFn], MethodFn]:
    """Register the decorated function as unlearning method ``name``. What it returns is
    its headline: scored under the plain keys, saved, and attacked; ``variants`` maps
    that model to other versions the unlearn stage scores beside it, under
    ``<variant>.`` keys (PI-Prefix's artifact, ``pfm.unlearn.pi_prefix``)."""
    if base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {base!r}")

    def decorator(run: MethodFn) -> MethodFn:
        METHODS.register(name)(Method(run, recipe, needs_forget, needs_retain, base, variants))
        return run

    return decorator


@dataclass(frozen=True)
class TrainRecipe:
    """Epochs of the one training loop (Adam, no scheduler) over a method's data."""

    epochs: Count
    batch_size: Count
    lr: Rate


def fit(
    model: PromptedClassifier,
    objective: Objective,
    data: CountedSplit,
    recipe: TrainRecipe,
    seed: int,
) -> PromptedClassifier:
    """Train ``model`` in place with ``pfm.train.train`` — the loop every model in the
    project trains with — for exactly ``recipe.epochs``: no validation pass and no early
    stopping, because the recipe is the unlearning budget."""
    config = TrainConfig(
        epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, eval_modes=()
    )
    train(model, objective, data, data, config, seed, checkpoint=None, key="")
    return model
