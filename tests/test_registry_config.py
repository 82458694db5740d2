from dataclasses import dataclass

import pytest

from pfm.config import from_mapping
from pfm.registry import Registry


def test_registry_lists_valid_names_on_a_miss() -> None:
    registry: Registry[int] = Registry("thing")
    registry.register("a")(1)
    registry.register("b")(2)
    assert registry.get("a") == 1
    with pytest.raises(KeyError, match="unknown thing 'c'; valid names: a, b"):
        registry.get("c")


def test_registry_refuses_duplicates() -> None:
    registry: Registry[int] = Registry("thing")
    registry.register("a")(1)
    with pytest.raises(ValueError, match="twice"):
        registry.register("a")(2)


@dataclass(frozen=True)
class _Knobs:
    epochs: int
    modes: tuple[str, ...] = ("x",)


def test_config_rejects_unknown_and_missing_keys() -> None:
    assert from_mapping(_Knobs, {"epochs": 2, "modes": ["a"]}, "t") == _Knobs(2, ("a",))
    with pytest.raises(KeyError, match=r"unknown key\(s\) \['epoch'\]"):
        from_mapping(_Knobs, {"epoch": 2}, "t")
    with pytest.raises(KeyError, match=r"missing key\(s\) \['epochs'\]"):
        from_mapping(_Knobs, {}, "t")
