"""The dataset registry: name → function building a ``PreparedDataset`` from its options."""

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from pfm.data.prepared import PreparedDataset
from pfm.registry import Registry

DatasetBuilder = Callable[..., PreparedDataset]

DATASETS: Registry[DatasetBuilder] = Registry("dataset")


def build_dataset(name: str, options: Mapping[str, Any]) -> PreparedDataset:
    """Build dataset ``name``; ``options`` (its params.yaml block) must match its signature."""
    builder = DATASETS.get(name)
    signature = inspect.signature(builder)
    try:
        signature.bind(**options)
    except TypeError as error:
        raise ValueError(
            f"bad options for dataset {name!r}: {error}; it takes {list(signature.parameters)}"
        ) from None
    return builder(**options)
