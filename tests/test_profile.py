"""A profile's overrides reach params.yaml through ``dvc exp run -S``: the flags
``pfm.profile`` prints, applied by DVC's own parser, give params.yaml deep-merged with
the profile, and nothing else; a key params.yaml leaves out (derived, a builder default)
is added, and what the stages then read passes stage validate's check."""

import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from pfm.config import load_params
from pfm.profile import flags, main, merged
from pfm.validate import check_params
from tests.conftest import PROFILES, profile_id

ROOT = Path(__file__).resolve().parents[1]


def applied(params: Path, profile: Path, tmp_path: Path, check: bool = True) -> dict[str, Any]:
    """``params`` after DVC applies ``profile``'s flags to a copy of it."""
    target = tmp_path / "params.yaml"
    shutil.copy(params, target)
    args = flags(profile, target, check)
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
    "train": {"lr": 0.0001, "precision": "bf16", "batch_size": 8},  # batch_size: a new key
    "aggregate": {"profile": 'GPU (DINOv2-S, 224 px): "bf16" × 3 seeds, k = 1'},
    "flag": True,
}


def test_the_flags_set_exactly_the_overrides(tmp_path: Path) -> None:
    """DVC's own parser applies the flags: the result is the merge ``flags`` validates."""
    params = write(tmp_path / "base.yaml", BASE)
    profile = write(tmp_path / "profile.yaml", OVERRIDES)
    (tmp_path / "dvc").mkdir()
    assert applied(params, profile, tmp_path / "dvc", check=False) == merged(BASE, OVERRIDES)
    assert "+train.batch_size=8" in flags(profile, params, check=False)  # DVC adds it


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train": {"epoch": 3}}, r"train: unknown key\(s\) \['epoch'\]"),
        ({"trian": {}}, r"params.yaml: unknown key\(s\) \['trian'\]"),
        ({"data": {"bloodmnist": {"sise": 224}}}, "bad options for dataset 'bloodmnist'"),
        ({"train_base": {"lr": "fast"}}, "train_base.lr: expected "),
    ],
)
def test_a_key_params_lacks_or_a_bad_value_is_refused_by_name(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    profile = write(tmp_path / "profile.yaml", overrides)
    with pytest.raises((KeyError, ValueError), match=message):
        flags(profile, ROOT / "params.yaml")


@pytest.mark.parametrize("profile", PROFILES, ids=profile_id)
def test_every_profile_applies_to_params_yaml_and_validates(tmp_path: Path, profile: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    overrides = yaml.safe_load(profile.read_text())
    assert applied(ROOT / "params.yaml", profile, tmp_path) == merged(params, overrides)
    check_params(load_params(tmp_path / "params.yaml"), devices=False)


def test_a_derived_key_can_be_set_and_what_follows_it_follows(tmp_path: Path) -> None:
    """``train_base.lr`` is unset in params.yaml (it follows ``train.lr``): a profile sets
    it, and ``unlearn.retrain`` follows the plain model's recipe."""
    overrides = {"train": {"prompt_lr": None}, "train_base": {"lr": 0.01}}
    profile = write(tmp_path / "profile.yaml", overrides)
    applied(ROOT / "params.yaml", profile, tmp_path)
    params = load_params(tmp_path / "params.yaml")
    assert params["train_base"]["lr"] == params["unlearn"]["retrain"]["lr"] == 0.01
    assert params["train_base"]["batch_size"] == params["train"]["batch_size"]
    assert params["train_base"]["eval_modes"] == ["none"]


def test_the_command_prints_shell_words(capsys: pytest.CaptureFixture) -> None:
    profile = ROOT / "profiles" / "pretrained.yaml"
    main([str(profile), "--params", str(ROOT / "params.yaml")])
    assert shlex.split(capsys.readouterr().out) == flags(profile, ROOT / "params.yaml")
