"""The ``samples`` section of params.yaml: what stage forget-samples runs
(``pfm.unlearn.sample_suite``). Apart from the suite, so that stage validate checks the
section through the stage's own reader without importing the stage's workers and
scoring."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pfm.config import Count, Fraction, NonEmpty, ParamError, from_mapping
from pfm.precision import Precision
from pfm.unlearn.base import METHODS, MethodName, serving


@dataclass(frozen=True)
class SamplesParams:
    """The ``samples`` section of params.yaml."""

    methods: Annotated[tuple[MethodName, ...], NonEmpty()]  # each serves samples
    fraction: Fraction  # share of the train rows each set forgets (the authors': 3 %)
    sets: Count  # forget sets per seed, every method alike
    batch_size: Count = 256  # scoring batch
    precision: Precision = "fp32"  # fp32 | bf16: unlearning and its scoring


def samples_params(values: Mapping[str, Any]) -> SamplesParams:
    """The section, refused where a method cannot forget samples or where a method's
    reference is not run beside it (no verdict could be drawn)."""
    params = from_mapping(SamplesParams, values, "samples")
    for name in params.methods:
        spec = METHODS.get(name)
        if "samples" not in spec.serves:
            raise ParamError(
                f"samples.methods: {name} cannot forget samples (it serves "
                f"{', '.join(spec.serves)}); methods that can: {serving('samples')}"
            )
        if spec.declaration.reference not in params.methods:
            raise ParamError(
                f"samples.methods: {name} is measured against "
                f"{spec.declaration.reference}, which must run beside it"
            )
    return params
