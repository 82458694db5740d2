"""A profile's overrides reach params.yaml through ``dvc exp run -S``: the flags
``pfm.profile`` prints, applied by DVC's own parser, give params.yaml deep-merged with
the profile, and nothing else."""

import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from pfm.profile import flags, leaves, main

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "profiles" / "gpu.yaml"


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        both = isinstance(value, Mapping) and value and isinstance(base.get(key), Mapping)
        out[key] = merged(base[key], value) if both else value
    return out


def applied(params: Path, profile: Path, tmp_path: Path) -> dict[str, Any]:
    """``params`` after DVC applies ``profile``'s flags to a copy of it."""
    target = tmp_path / "params.yaml"
    shutil.copy(params, target)
    args = flags(profile, target)
    assert args[::2] == ["-S"] * (len(args) // 2)
    apply_overrides(target, args[1::2])
    return yaml.safe_load(target.read_text())


def write(path: Path, content: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(content), sort_keys=False, allow_unicode=True))
    return path


BASE = {
    "datasets": ["digits"],
    "data": {"fashion-mnist": {"train_per_class": 200, "root": "/usr/share"}},
    "train": {"epochs": 25, "lr": 0.003, "precision": "fp32", "device": "auto"},
    "aggregate": {"profile": "default", "k": 1},
    "flag": False,
}
OVERRIDES = {
    "datasets": ["fashion-mnist", "nan", "1e3"],  # strings that look like numbers
    "data": {"fashion-mnist": {"train_per_class": None}},
    "train": {"lr": 0.0001, "precision": "bf16"},
    "aggregate": {"profile": 'GPU (DINOv2-S, 224 px): "bf16" × 3 seeds, k = 1'},
    "flag": True,
}


def test_the_flags_set_exactly_the_overrides(tmp_path: Path) -> None:
    params = write(tmp_path / "base.yaml", BASE)
    profile = write(tmp_path / "profile.yaml", OVERRIDES)
    (tmp_path / "dvc").mkdir()
    assert applied(params, profile, tmp_path / "dvc") == merged(BASE, OVERRIDES)


def test_a_key_params_lacks_is_refused_by_name() -> None:
    with pytest.raises(KeyError, match="'train.epoch'.*'train' has no such key"):
        list(leaves({"train": {"epoch": 3}}, BASE))
    with pytest.raises(KeyError, match="'trian'"):
        list(leaves({"trian": {}}, BASE))


def test_the_gpu_profile_applies_to_params_yaml(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    overrides = yaml.safe_load(GPU.read_text())
    assert applied(ROOT / "params.yaml", GPU, tmp_path) == merged(params, overrides)


def test_the_command_prints_shell_words(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    params = write(tmp_path / "base.yaml", BASE)
    profile = write(tmp_path / "profile.yaml", OVERRIDES)
    main([str(profile), "--params", str(params)])
    assert shlex.split(capsys.readouterr().out) == flags(profile, params)
