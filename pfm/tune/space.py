"""A method's search space, read off its recipe's fields, and whether it can be tuned.

A recipe field is searched when its annotation carries a search marker
(``pfm.config.LogUniform``, ``Uniform``, ``Choice``), so a method brings its space with
its recipe and stage tune never names a method. Budget fields (epochs, steps, batch
sizes) carry none and stay as params sets them. A space is checked against the field it
searches — every value it can reach must be one the field takes — at stage validate, so
a range beyond a field's ``Bounds`` is refused before anything runs."""

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pfm.config import ParamError, Search, conform, describe, shown
from pfm.unlearn.base import METHODS

R = TypeVar("R")


def _markers(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint)[1:] if typing.get_origin(hint) is Annotated else ()


def search_space(recipe: type) -> dict[str, Search]:
    """Field name → its search marker, for every searched field of dataclass ``recipe``."""
    hints = typing.get_type_hints(recipe, include_extras=True)
    space: dict[str, Search] = {}
    for field in dataclasses.fields(recipe):
        found = [m for m in _markers(hints[field.name]) if isinstance(m, Search)]
        if len(found) > 1:
            raise ValueError(f"{recipe.__name__}.{field.name}: more than one search marker")
        if found:
            space[field.name] = found[0]
    return space


def check_space(recipe: type, where: str) -> None:
    """Refuse a space that reaches a value its field does not take, in one line naming
    the key (``unlearn.salun.saliency``)."""
    hints = typing.get_type_hints(recipe, include_extras=True)
    for name, search in search_space(recipe).items():
        key = f"{where}.{name}"
        for value in search.ends():
            try:
                conform(value, hints[name], key)
            except ParamError:
                raise ParamError(
                    f"{key}: search space {search} reaches {shown(value)}, which the field "
                    f"does not take (expected {describe(hints[name])})"
                ) from None


def untunable_reason(method: str) -> str | None:
    """Why ``method`` is not searched (``None``: it is): a reference is the target of
    the others, a recipe without markers has nothing to search, and the objective needs
    the reference as a method it can run on the tuning sets."""
    spec = METHODS.get(method)
    reference = spec.declaration.reference
    if reference == method:
        return "it is the reference the other methods are tuned towards"
    if not search_space(spec.recipe):
        return "its recipe declares no search space"
    if reference not in METHODS:
        return f"its reference {reference} is no registered method the search can run"
    return None


def suggested(hand: R, space: Mapping[str, Search], trial: Any) -> R:
    """``hand`` with each searched field set to ``trial``'s value (budget fields kept)."""
    values = {name: search.suggest(trial, name) for name, search in space.items()}
    return dataclasses.replace(hand, **values)  # type: ignore[type-var]


def searched_values(recipe: Any, space: Mapping[str, Search]) -> dict[str, Any]:
    """The searched fields of ``recipe``, as a trial's params (the hand recipe's trial 0)."""
    return {name: getattr(recipe, name) for name in space}


@dataclass(frozen=True)
class Plan:
    """One method of the search: its space, or why it has none, and its reference."""

    method: str
    space: Mapping[str, Search]
    reason: str | None
    reference: str

    @property
    def tunable(self) -> bool:
        return self.reason is None


def plan(method: str) -> Plan:
    spec, reason = METHODS.get(method), untunable_reason(method)
    space = search_space(spec.recipe) if reason is None else {}
    return Plan(method, space, reason, spec.declaration.reference)
