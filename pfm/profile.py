"""Profiles: short YAML files of overrides on params.yaml, run as a DVC experiment.

A profile (``profiles/gpu.yaml``) holds only the keys whose values differ from
params.yaml. ``python -m pfm.profile PROFILE`` prints one ``-S key=value`` flag per
overridden leaf, shell-quoted, each value written in the override grammar ``dvc exp run
-S`` parses (Hydra's), so that

    eval "dvc exp run $(python -m pfm.profile profiles/gpu.yaml)"

runs the pipeline with the profile on top of params.yaml: params.yaml stays the one
source of every knob and keeps its comments (DVC rewrites the values in place), and
``dvc exp diff`` lists exactly what the profile changed. Mappings merge key by key; a
list or any other value replaces the whole. A key params.yaml leaves out (derived,
``pfm.derive``, or a dataset builder's default) is added (``-S +key=value``). The merged
params are checked first, as stage validate checks them (devices aside: a GPU profile is
written on machines without one), so a misspelt or renamed key or a bad value is
refused by name before DVC starts.
"""

import argparse
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pfm.config import load_params
from pfm.validate import check_params


def leaves(
    overrides: Mapping[str, Any], params: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, Any, bool]]:
    """(dotted key, value, whether ``params`` has the key) of every overridden leaf, in the
    profile's order. A mapping that overrides a mapping is walked into; anything else is a
    leaf."""
    for key, value in overrides.items():
        dotted, present = f"{prefix}{key}", key in params
        if isinstance(value, Mapping) and value and present and isinstance(params[key], Mapping):
            yield from leaves(value, params[key], f"{dotted}.")
        else:
            yield dotted, value, present


def merged(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with ``overrides`` applied as ``dvc exp run -S`` applies the flags."""
    out = dict(params)
    for key, value in overrides.items():
        both = isinstance(value, Mapping) and value and isinstance(params.get(key), Mapping)
        out[key] = merged(params[key], value) if both else value
    return out


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


def flags(profile: Path, params: Path = Path("params.yaml"), check: bool = True) -> list[str]:
    """The ``dvc exp run`` arguments that apply ``profile`` to ``params``: ``-S``,
    ``key=value`` (``+key=value`` for a key ``params`` leaves out), ``-S``, …; with
    ``check``, after the merged params (derived keys filled) passed stage validate's check."""
    overrides = yaml.safe_load(profile.read_text())
    if not isinstance(overrides, Mapping) or not overrides:
        raise ValueError(f"{profile} must hold a non-empty mapping of overrides")
    base = load_params(params, complete=False)
    if check:
        check_params(merged(base, overrides), devices=False)
    return [
        part
        for key, value, present in leaves(overrides, base)
        for part in ("-S", f"{'' if present else '+'}{key}={override_value(value)}")
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pfm.profile", description=__doc__)
    parser.add_argument("profile", type=Path, help="YAML file of overrides")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    print(" ".join(shlex.quote(part) for part in flags(args.profile, args.params)))


if __name__ == "__main__":
    main()
