"""The dataset registry: name → function building a ``PreparedDataset`` from its options,
and name → its description, what a dataset will hold known before it is built."""

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pfm.config import OneOf, check_arguments
from pfm.data.prepared import PreparedDataset
from pfm.registry import Registry

DatasetBuilder = Callable[..., PreparedDataset]

DATASETS: Registry[DatasetBuilder] = Registry("dataset")
DatasetName = Annotated[str, OneOf(DATASETS)]  # a params field naming a dataset


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset built from given options will hold, known without building it: the
    limits stage ``validate`` checks params against (``pfm.limits``), since a stage that
    finds them only after loading the data has already lost its outputs to DVC."""

    data_type: str  # image | audio | text
    num_classes: int
    # the most train samples the smallest class can have: its exact count where the
    # source's counts are known, else a bound (official totals ÷ C, a per-class cap);
    # None: unknown until built. A value above it fails for certain; one below may still.
    train_per_class: int | None
    # the registered tokenizer its token ids come from (pfm.data.tokens); None: no tokens
    tokenizer: str | None = None


# the builder's every argument (defaults filled) → what it will build
DatasetDescriber = Callable[[Mapping[str, Any]], DatasetInfo]
DESCRIPTIONS: Registry[DatasetDescriber] = Registry("dataset description")


def check_options(name: str, options: Mapping[str, Any], where: str | None = None) -> None:
    """Refuse ``options`` (a params.yaml block, at key ``where``: ``data.<name>`` unless
    given) that do not fit dataset ``name``'s builder: an unknown or missing argument, or
    a value its annotation does not admit — before minutes of building, not after."""
    builder = DATASETS.get(name)
    signature = inspect.signature(builder)
    try:
        signature.bind(**options)
    except TypeError as error:
        raise ValueError(
            f"bad options for dataset {name!r}: {error}; it takes {list(signature.parameters)}"
        ) from None
    check_arguments(builder, options, where or f"data.{name}")


def describe(name: str, options: Mapping[str, Any], where: str | None = None) -> DatasetInfo:
    """What dataset ``name`` built from ``options`` will hold; nothing is read or built.
    The describer sees the builder's defaults, so they are written once."""
    check_options(name, options, where)
    arguments = inspect.signature(DATASETS.get(name)).bind(**options)
    arguments.apply_defaults()
    return DESCRIPTIONS.get(name)(arguments.arguments)


def build_dataset(
    name: str, options: Mapping[str, Any], where: str | None = None
) -> PreparedDataset:
    """Build dataset ``name``; ``options`` (its params.yaml block) must match its signature."""
    check_options(name, options, where)
    return DATASETS.get(name)(**options)
