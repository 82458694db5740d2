"""The dataset registry: name → function building a ``PreparedDataset`` from its options."""

import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pfm.config import OneOf, check_arguments
from pfm.data.prepared import PreparedDataset
from pfm.registry import Registry

DatasetBuilder = Callable[..., PreparedDataset]

DATASETS: Registry[DatasetBuilder] = Registry("dataset")
DatasetName = Annotated[str, OneOf(DATASETS)]  # a params field naming a dataset


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


def build_dataset(
    name: str, options: Mapping[str, Any], where: str | None = None
) -> PreparedDataset:
    """Build dataset ``name``; ``options`` (its params.yaml block) must match its signature."""
    check_options(name, options, where)
    return DATASETS.get(name)(**options)
