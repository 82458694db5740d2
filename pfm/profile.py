"""Profiles: short YAML files of overrides on params.yaml, run as a DVC experiment.

A profile (``profiles/gpu.yaml``) holds only the keys whose values differ from
params.yaml. ``python -m pfm.profile PROFILE`` prints one ``-S key=value`` flag per
overridden leaf, shell-quoted, each value written in the override grammar ``dvc exp run
-S`` parses (Hydra's), so that

    eval "dvc exp run $(python -m pfm.profile profiles/gpu.yaml)"

runs the pipeline with the profile on top of params.yaml: params.yaml stays the one
source of every knob and keeps its comments (DVC rewrites the values in place), and
``dvc exp diff`` lists exactly what the profile changed. Mappings merge key by key; a
list or any other value replaces the whole. Every key is checked against params.yaml
first, so an override of a key it lacks (misspelt, or renamed since the profile was
written) is refused by name before DVC starts.
"""

import argparse
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pfm.config import load_params


def leaves(
    overrides: Mapping[str, Any], params: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every overridden leaf, in the profile's order. A mapping
    that overrides a mapping is walked into; anything else is a leaf. A key ``params``
    lacks raises a KeyError naming the keys it has there."""
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if key not in params:
            where = f"params.yaml's {prefix[:-1]!r}" if prefix else "params.yaml"
            raise KeyError(
                f"profile key {dotted!r}: {where} has no such key; it has {sorted(params)}"
            )
        if isinstance(value, Mapping) and value and isinstance(params[key], Mapping):
            yield from leaves(value, params[key], f"{dotted}.")
        else:
            yield dotted, value


def override_value(value: Any) -> str:
    """``value`` in Hydra's override grammar: null, true/false, numbers as Python writes
    them, every string double-quoted (a bare ``nan`` or ``1e3`` would parse as a number),
    lists ``[a,b]`` and mappings ``{k:v}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as an override")


def flags(profile: Path, params: Path = Path("params.yaml")) -> list[str]:
    """The ``dvc exp run`` arguments that apply ``profile`` to ``params``: ``-S``,
    ``key=value``, ``-S``, …"""
    overrides = yaml.safe_load(profile.read_text())
    if not isinstance(overrides, Mapping) or not overrides:
        raise ValueError(f"{profile} must hold a non-empty mapping of overrides")
    pairs = leaves(overrides, load_params(params))
    return [part for key, value in pairs for part in ("-S", f"{key}={override_value(value)}")]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pfm.profile", description=__doc__)
    parser.add_argument("profile", type=Path, help="YAML file of overrides")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    print(" ".join(shlex.quote(part) for part in flags(args.profile, args.params)))


if __name__ == "__main__":
    main()
