"""Params are validated once, at the edge, into frozen dataclasses.

Below this module functions take named arguments, never a config bag; an unknown or
missing key in params.yaml is an error naming the valid keys (big_vision's locked
configs), so a misspelt knob cannot silently fall back to a default.
"""

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file {path} not found (run from the project root)")
    params = yaml.safe_load(path.read_text())
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of sections")
    return params


def section(params: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    try:
        value = params[name]
    except KeyError:
        raise KeyError(f"params has no section {name!r}; sections: {sorted(params)}") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"params section {name!r} must be a mapping")
    return value


def from_mapping(cls: type[C], values: Mapping[str, Any], where: str) -> C:
    """Build dataclass ``cls`` from ``values``; unknown or missing keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise KeyError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise KeyError(f"{where}: missing key(s) {missing}")
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**converted)


def matrix_runs(params: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Every (method, seed) of params' ``methods`` × ``seeds``: what a per-dataset stage
    loops over in one process (an interpreter start with torch and transformers costs
    ~9 s on 2 cores; a DVC matrix item per method would pay it every time)."""
    methods, seeds = params.get("methods"), params.get("seeds")
    if not methods or not seeds:
        raise KeyError("params needs non-empty `methods` and `seeds` lists")
    return [(str(method), int(seed)) for method in methods for seed in seeds]
