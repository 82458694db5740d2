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

from pfm.config import Count, LogUniform, OneOf, Rate
from pfm.evaluate import Variants
from pfm.forget_sets import FORGET_KINDS, ForgetKind, ForgetSet
from pfm.losses import Objective
from pfm.models.prompted import PromptedClassifier
from pfm.registry import Registry
from pfm.train import TrainConfig, train
from pfm.unlearn.data import CountedSplit

# family → its exact-unlearning reference, a model of the same architecture trained without
# the classes: ``retrain`` (a method) and ``retrain_prompt`` (stage train's never-seen
# prompt models, ``pfm.references``; no registered method, scored beside them)
REFERENCES = {"prompt": "retrain_prompt", "plain": "retrain"}
BASES = tuple(REFERENCES)  # the models a method may start from: one per family
PROMPT_REFERENCE = REFERENCES["prompt"]

R = TypeVar("R")  # a method's recipe dataclass


@dataclass(frozen=True)
class Request(Generic[R]):
    """One unlearning call: forget ``forget_set`` (classes or train rows) from ``model``.

    ``model`` is a private copy of the caller's model: the method may change it in place
    and return it (or return another model). ``forget`` and ``retain`` hold the train
    split's rows inside the forget set and the rest, each row marked as which
    (``pfm.batches.MarkedBatch.forget``); each is ``None`` unless the method declares it
    needs it, so a method cannot read what it was not given."""

    model: PromptedClassifier
    forget_set: ForgetSet  # checked against the model and the split by the runner
    forget: CountedSplit | None
    retain: CountedSplit | None
    recipe: R
    seed: int

    @property
    def classes(self) -> tuple[int, ...]:
        """The forgotten classes (sorted, distinct, 1..C−1 of them): only a class request
        has them, and only a method that serves classes alone needs them."""
        if self.forget_set.kind != "classes":
            raise ValueError(f"this request forgets {self.forget_set.kind}, not classes")
        return self.forget_set.members


MethodFn = Callable[[Request[Any]], PromptedClassifier]


@dataclass(frozen=True)
class Declaration:
    """What a run's metrics file records about its method, for the report to pair it:
    its family (``prompt`` | ``plain``) and the method it is measured against (a
    reference names itself)."""

    family: str
    reference: str

    def fields(self) -> dict[str, str]:
        """The metrics file's string fields (``pfm.reporting.aggregate`` reads them)."""
        return {"family": self.family, "reference": self.reference}


PROMPT_REFERENCE_DECLARATION = Declaration("prompt", PROMPT_REFERENCE)


@dataclass(frozen=True)
class Method:
    run: MethodFn
    recipe: type
    needs_forget: bool
    needs_retain: bool
    base: str
    declaration: Declaration
    variants: Variants | None = None  # other versions of its output worth scoring
    serves: tuple[ForgetKind, ...] = FORGET_KINDS  # the forget-set kinds it can forget


METHODS: Registry[Method] = Registry("unlearning method")
MethodName = Annotated[str, OneOf(METHODS)]  # a params field naming a method


def serving(kind: ForgetKind) -> list[str]:
    """The registered methods that can forget a ``kind`` of forget set, in registry order:
    what a refusal names as the alternatives."""
    return [name for name in METHODS if kind in METHODS.get(name).serves]


def method(
    name: str,
    *,
    recipe: type,
    needs_forget: bool,
    needs_retain: bool,
    base: str = "plain",
    family: str | None = None,
    reference: str | None = None,
    variants: Variants | None = None,
    serves: tuple[ForgetKind, ...] = FORGET_KINDS,
) -> Callable[[MethodFn], MethodFn]:
    """Register the decorated function as unlearning method ``name``. What it returns is
    its headline: scored under the plain keys, saved, and attacked; ``variants`` maps
    that model to other versions the unlearn stage scores beside it, under
    ``<variant>.`` keys (PI-Prefix's artifact, ``pfm.unlearn.pi_prefix``). ``serves``
    names the forget-set kinds it can forget (``pfm.forget_sets``): a method that reads
    only its forget and retain rows serves both; one that deletes what a class owns (a
    prompt, a head row) serves classes alone. ``family``
    unset is ``base`` (a method is compared within the architecture it starts from),
    ``reference`` unset is the family's (``REFERENCES``): ``retrain`` is its own."""
    if base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {base!r}")
    if not serves or set(serves) - set(FORGET_KINDS):
        raise ValueError(f"serves must name some of {FORGET_KINDS}, got {serves!r}")
    family = base if family is None else family
    if family not in REFERENCES:
        raise ValueError(f"family must be one of {list(REFERENCES)}, got {family!r}")
    declaration = Declaration(family, REFERENCES[family] if reference is None else reference)

    def decorator(run: MethodFn) -> MethodFn:
        spec = Method(run, recipe, needs_forget, needs_retain, base, declaration, variants, serves)
        METHODS.register(name)(spec)
        return run

    return decorator


@dataclass(frozen=True)
class TrainRecipe:
    """Epochs of the one training loop (Adam, no scheduler) over a method's data."""

    epochs: Count  # budget: never searched
    batch_size: Count
    lr: Annotated[Rate, LogUniform(1e-4, 1e-1)]  # Adam


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
