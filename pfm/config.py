"""Params are validated once, at the edge, into frozen dataclasses.

Below this module functions take named arguments, never a config bag; an unknown or
missing key in params.yaml is an error naming the valid keys (big_vision's locked
configs), so a misspelt knob cannot silently fall back to a default.

Every value is also checked against its field's annotation before the dataclass is
built: an ``int`` field takes an integer (not a bool, not ``3.0``: a float where a count
belongs is a typo, not a request), a ``float`` field any finite number, a ``tuple[...]``
field a list. Ranges and name sets ride on the annotation with ``Annotated`` (``Count``,
``Rate``, ``OneOf(REGISTRY)`` ...), so a field declares what it accepts where it is
defined, and a field added later is checked without touching this module. A bad value
is one line naming the key, what is allowed and what was given:
``train.epochs: expected an integer ≥ 1, got 'ten'``.
"""

import dataclasses
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml

from pfm.derive import completed

C = TypeVar("C")

UNIONS = (Union, types.UnionType)
SEQUENCES = (tuple, list, Sequence)


class ParamError(ValueError):
    """One bad param value; its message is one line: key, what is allowed, what was given.
    A plain ValueError underneath, so it crosses from a worker process intact."""


def bad_value(key: str, expected: str, value: Any) -> ParamError:
    return ParamError(f"{key}: expected {expected}, got {shown(value)}")


@dataclass(frozen=True)
class Bounds:
    """The range a number must lie in, declared on its type: ``Annotated[int, Bounds(1)]``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        low, high = self.low, self.high
        above = low is None or value > low or (value == low and not self.low_open)
        below = high is None or value < high or (value == high and not self.high_open)
        return above and below

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '≥'} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '≤'} {self.high:g}"
        return ""


@dataclass(frozen=True)
class OneOf:
    """A name from a set, usually a registry: consulted when a value is checked, so names
    registered after this annotation was written count."""

    names: Iterable[str]
    kind: str = ""  # what a name names; a registry's own ``kind`` when empty

    def __str__(self) -> str:
        kind = self.kind or getattr(self.names, "kind", "")
        listed = ", ".join(str(name) for name in self.names)
        return f"one of the {kind}s {listed}" if kind else f"one of {listed}"


@dataclass(frozen=True)
class Satisfies:
    """A value ``test`` accepts, for checks no type or range can say (a device name)."""

    test: Callable[[Any], bool]
    description: str


@dataclass(frozen=True)
class NonEmpty:
    """A list that must hold at least one item."""


@dataclass(frozen=True)
class LogUniform:
    """A searched number, drawn log-uniformly from [low, high] by stage tune (``pfm.tune``):
    ``lr: Annotated[Rate, LogUniform(1e-5, 1e-2)]``. Scales that span decades (learning
    rates, loss weights) are searched on a log scale."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, got {self.low}, {self.high}")

    def ends(self) -> tuple[float, ...]:
        """The values the search can reach at its extremes: each must suit the field."""
        return (self.low, self.high)

    def suggest(self, trial: Any, name: str) -> float:
        """``trial``'s value of ``name`` (an Optuna trial, duck-typed: no import here)."""
        return trial.suggest_float(name, self.low, self.high, log=True)

    def __str__(self) -> str:
        return f"log-uniform [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Uniform:
    """A searched number, drawn uniformly from [low, high] by stage tune: for a share
    (``saliency``), where every part of the range is as likely to matter."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"Uniform needs low < high, got {self.low}, {self.high}")

    def ends(self) -> tuple[float, ...]:
        return (self.low, self.high)

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def __str__(self) -> str:
        return f"uniform [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Choice:
    """A searched value, one of ``options``, by stage tune: a categorical field (a forget
    target) or a few meaningful settings (a distillation temperature)."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise ValueError(f"Choice needs at least two options, got {self.options}")

    def ends(self) -> tuple[Any, ...]:
        return self.options

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))

    def __str__(self) -> str:
        return "one of " + ", ".join(shown(option) for option in self.options)


Search = LogUniform | Uniform | Choice  # the markers stage tune reads off a recipe's fields


def is_device(name: str) -> bool:
    """``auto`` or a device torch can parse whose type this project runs on. Imported late:
    the aggregate stage reads params without loading torch."""
    if name == "auto":
        return True
    import torch

    try:
        return torch.device(name).type in ("cpu", "cuda", "mps", "xpu")
    except RuntimeError:
        return False


Count = Annotated[int, Bounds(1)]  # epochs, batch sizes, steps, samples: at least one
Natural = Annotated[int, Bounds(0)]  # seeds and counts where zero means something
Rate = Annotated[float, Bounds(0, low_open=True)]  # learning rates, temperatures, C
Weight = Annotated[float, Bounds(0)]  # loss weights: zero switches a term off
Fraction = Annotated[float, Bounds(0, 1, low_open=True, high_open=True)]  # a split's share
Share = Annotated[float, Bounds(0, 1, low_open=True)]  # a part of a whole, all of it allowed
Counts = Annotated[tuple[Count, ...], NonEmpty()]  # forget-set sizes k, ...
Naturals = Annotated[tuple[Natural, ...], NonEmpty()]  # seeds, shot counts
Device = Annotated[str, Satisfies(is_device, "auto or a torch device (cpu, cuda, cuda:1, mps)")]


def shown(value: Any) -> str:
    """``value`` as params.yaml spells it (null, true, 'text'), cut to one short line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        text = "[" + ", ".join(shown(item) for item in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _split(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    """(the bare type, its ``Annotated`` markers)."""
    if typing.get_origin(hint) is Annotated:
        bare, *markers = typing.get_args(hint)
        return bare, tuple(markers)
    return hint, ()


def _is_sequence(hint: Any) -> bool:
    bare = _split(hint)[0]
    return typing.get_origin(bare) in SEQUENCES or bare in SEQUENCES


def describe(hint: Any) -> str:
    """What ``hint`` admits, in words: ``an integer ≥ 1``, ``null or a list, each item …``."""
    bare, markers = _split(hint)
    origin, args = typing.get_origin(bare), typing.get_args(bare)
    if bare is Any:
        return "any value"
    if origin in UNIONS:
        parts = [describe(arg) for arg in args]
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    if origin is Literal:
        return "one of " + ", ".join(shown(arg) for arg in args)
    if _is_sequence(bare):
        item = args[0] if args and (len(args) == 1 or args[1] is Ellipsis) else Any
        kind = "a non-empty list" if any(isinstance(m, NonEmpty) for m in markers) else "a list"
        return kind if item is Any else f"{kind}, each item {describe(item)}"
    for marker in markers:
        if isinstance(marker, OneOf):
            return str(marker)
        if isinstance(marker, Satisfies):
            return marker.description
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    words = names.get(bare) or ("a path" if bare is Path else None)
    if words is None:
        block = _is_mapping(bare) or dataclasses.is_dataclass(bare)
        words = "null" if bare is type(None) else "a mapping" if block else str(bare)
    bounds = " ".join(str(m) for m in markers if isinstance(m, Bounds))
    return f"{words} {bounds}" if bounds else words


def _is_mapping(bare: Any) -> bool:
    origin = typing.get_origin(bare) or bare
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _scalar_fits(value: Any, bare: Any) -> bool:
    if bare is bool:
        return isinstance(value, bool)
    if bare is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if bare is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if bare is str:
        return isinstance(value, str)
    if bare is Path:
        return isinstance(value, str | Path)
    if bare is type(None):
        return value is None
    if typing.get_origin(bare) is Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(bare))
    if _is_mapping(bare) or dataclasses.is_dataclass(bare):
        return isinstance(value, Mapping)
    return True  # a type params cannot spell (a class): its constructor checks it


def _markers_admit(value: Any, markers: tuple[Any, ...]) -> bool:
    for marker in markers:
        if isinstance(marker, Bounds) and not marker.admits(value):
            return False
        if isinstance(marker, OneOf) and value not in marker.names:
            return False
        if isinstance(marker, Satisfies) and not marker.test(value):
            return False
    return True


def conform(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against annotation ``hint`` and as the field holds it (a list as a
    tuple where ``hint`` says tuple); a ``ParamError`` naming ``key`` otherwise. In a list
    the error names the item (``unlearn.k[1]``)."""
    bare, markers = _split(hint)
    origin = typing.get_origin(bare)
    if bare is Any:
        return tuple(value) if isinstance(value, list) else value
    if origin in UNIONS:
        return _conform_union(value, hint, key)
    if _is_sequence(bare):
        return _conform_sequence(value, hint, key)
    if dataclasses.is_dataclass(bare) and isinstance(value, Mapping):
        return from_mapping(bare, value, key)  # a nested block: its own keys, checked
    if typing.get_args(bare) and _is_mapping(bare) and isinstance(value, Mapping):
        return _conform_mapping(value, hint, key)
    if not (_scalar_fits(value, bare) and _markers_admit(value, markers)):
        expected = describe(hint)
        if bare is float and isinstance(value, str) and _reads_as_number(value):
            expected += " (YAML reads 1e-3 as text: write 1.0e-3)"
        if bare is str and isinstance(value, bool):
            expected += " (YAML reads yes/no/on/off as true/false: quote it)"
        raise bad_value(key, expected, value)
    return value


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _conform_union(value: Any, hint: Any, key: str) -> Any:
    """A list goes to the one list alternative, if there is one, for an error naming the
    bad item; anything else takes the first alternative that admits it."""
    alternatives = typing.get_args(_split(hint)[0])
    lists = [alt for alt in alternatives if _is_sequence(alt)]
    if isinstance(value, list | tuple) and len(lists) == 1:
        return conform(value, lists[0], key)
    for alternative in alternatives:
        try:
            return conform(value, alternative, key)
        except ParamError:
            continue
    raise bad_value(key, describe(hint), value)


def _conform_mapping(value: Mapping, hint: Any, key: str) -> dict:
    """A ``Mapping[K, V]`` block: each name checked against ``K``, each value against
    ``V`` under its own dotted key (``attacks.recovery.budget.prompt.lr``)."""
    names, values = typing.get_args(_split(hint)[0])
    return {
        conform(name, names, key): conform(item, values, _key(key, str(name)))
        for name, item in value.items()
    }


def _conform_sequence(value: Any, hint: Any, key: str) -> Any:
    bare, markers = _split(hint)
    if not isinstance(value, list | tuple):
        raise bad_value(key, describe(hint), value)
    if any(isinstance(m, NonEmpty) for m in markers) and not value:
        raise bad_value(key, describe(hint), value)
    args = typing.get_args(bare)
    fixed = len(args) > 1 and args[1] is not Ellipsis  # tuple[A, B]: one hint per item
    if fixed and len(value) != len(args):
        raise bad_value(key, f"a list of {len(args)} items", value)
    hints = args if fixed else [args[0] if args else Any] * len(value)
    pairs = enumerate(zip(value, hints, strict=True))
    items = [conform(item, item_hint, f"{key}[{i}]") for i, (item, item_hint) in pairs]
    origin = typing.get_origin(bare) or bare
    return tuple(items) if origin is tuple else type(value)(items)


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def load_params(path: str | Path = "params.yaml", complete: bool = True) -> dict[str, Any]:
    """The params file as a mapping of sections, with every key it leaves to derivation
    filled (``pfm.derive``); ``complete=False``: the file's own keys only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file {path} not found (run from the project root)")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of sections")
    return completed(params) if complete else params


def section(params: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    try:
        value = params[name]
    except KeyError:
        raise KeyError(f"params has no section {name!r}; sections: {sorted(params)}") from None
    if not isinstance(value, Mapping):
        raise bad_value(name, "a mapping of keys", value)
    return value


def from_mapping(cls: type[C], values: Mapping[str, Any], where: str) -> C:
    """Build dataclass ``cls`` from ``values``; unknown or missing keys are errors, and so
    is any value its field's annotation does not admit (``where`` prefixes the key)."""
    label = where or "params.yaml"  # the file's own top level
    if not isinstance(values, Mapping):
        raise bad_value(label, "a mapping of keys", values)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise KeyError(f"{label}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise KeyError(f"{label}: missing key(s) {missing}")
    hints = typing.get_type_hints(cls, include_extras=True)
    return cls(**{k: conform(v, hints[k], _key(where, k)) for k, v in values.items()})


def one_key(values: Mapping[str, Any], name: str, hint: Any, where: str, default: Any) -> Any:
    """Key ``name`` of section ``values`` (at ``where``), checked against ``hint``; for a
    stage that reads one key of another stage's section (``train.device``) and must not
    fail on the rest of it."""
    return conform(values.get(name, default), hint, _key(where, name))


def check_arguments(function: Callable[..., Any], options: Mapping[str, Any], where: str) -> None:
    """Check ``options`` as keyword arguments of ``function`` (a dataset builder) the way
    ``from_mapping`` checks a dataclass: by the annotations of its parameters."""
    bare = function.func if isinstance(function, functools.partial) else function
    hints = typing.get_type_hints(bare, include_extras=True)
    parameters = inspect.signature(function).parameters
    for name, value in options.items():
        if name in parameters and name in hints:
            conform(value, hints[name], _key(where, name))


@dataclass(frozen=True)
class Matrix:
    """The top-level keys the stages read: dvc.yaml's matrix axes (``datasets``,
    ``seeds``), the ``methods`` a per-dataset stage loops over and its ``workers``. Names
    are checked against their registries by whoever resolves them (``pfm.validate``)."""

    datasets: Annotated[tuple[str, ...], NonEmpty()]
    seeds: Naturals
    methods: Annotated[tuple[str, ...], NonEmpty()]
    workers: Count


def matrix(params: Mapping[str, Any]) -> Matrix:
    """The top-level keys of ``params``, checked (every other key is a section)."""
    names = {f.name for f in dataclasses.fields(Matrix)}
    return from_mapping(Matrix, {k: v for k, v in params.items() if k in names}, "")


def matrix_runs(params: Mapping[str, Any], seed: int | None = None) -> list[tuple[str, int]]:
    """Every (method, seed) of params' ``methods`` × ``seeds`` — or × ``seed`` alone, one
    of them: a (dataset, seed) item of dvc.yaml, the unit one machine takes — which a stage
    loops over in one process (an interpreter start with torch and transformers costs
    ~9 s on 2 cores; a DVC matrix item per method would pay it every time)."""
    axes = matrix(params)
    if seed is not None and seed not in axes.seeds:
        raise bad_value("seeds", f"a list holding the stage's --seed {seed}", list(axes.seeds))
    seeds = axes.seeds if seed is None else (seed,)
    return [(method, s) for method in axes.methods for s in seeds]
