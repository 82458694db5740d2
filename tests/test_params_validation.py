"""Typed params at the edge: every value of params.yaml is checked for type and range
when it is read, and a bad one is one line naming the key, what is allowed and what was
given. The property tests walk every leaf of the real params.yaml (so a key added there
is covered without editing them) and feed it each category of bad input."""

import copy
import inspect
import math
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import yaml

from pfm.config import (
    Count,
    Device,
    NonEmpty,
    OneOf,
    ParamError,
    Rate,
    from_mapping,
    load_params,
    matrix_runs,
)
from pfm.data import DATASETS
from pfm.derive import completed
from pfm.validate import check_params
from tests.conftest import PROFILES, profile_id

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())  # the file's own keys


def with_builder_defaults(params: dict) -> dict:
    """``params`` with every ``data.<name>`` block spelling out its builder's defaults, so
    that the walks below cover every builder argument, not only those the file sets."""
    out = copy.deepcopy(params)
    for name, block in out["data"].items():
        for arg, parameter in inspect.signature(DATASETS.get(name)).parameters.items():
            default = parameter.default
            if default is not inspect.Parameter.empty:
                block.setdefault(arg, list(default) if isinstance(default, tuple) else default)
    return out


# as the stages read it (derived keys filled), and every builder default spelt out
PARAMS = with_builder_defaults(load_params(ROOT / "params.yaml"))
# where zero means something (a seed, a weight that switches a term off, data-free shots)
ZERO_ALLOWED = (
    "seeds[*]", "*.seed", "*.split_seed", "*.init_seed", "train*.kl_weight",
    "unlearn.*.retain_weight", "unlearn.scrub.alpha", "unlearn.scrub.gamma", "tune.weights.*",
    "unlearn.scrub.max_epochs", "attacks.recovery.anchor_shots", "attacks.recovery.shots[*]",
    "model.lora.dropout", "data.spoken-words.pitches[*]", "data.spoken-words.semitones[*]",
    "data.spoken-words.gain_db[*]", "data.spoken-words.snr_db[*]",
)  # fmt: skip
# where a negative number means something (a pitch shift down, a quieter clip)
SIGNED = ("data.spoken-words.semitones[*]", "data.spoken-words.gain_db[*]",
          "data.spoken-words.snr_db[*]")  # fmt: skip
# keys that name something from a registry or a fixed set: a made-up name is refused
NAMES = (
    "datasets[*]", "methods[*]", "samples.methods[*]", "train*.eval_modes[*]",
    "evaluate.modes[*]", "*.device",
    "pretrain.architecture", "pretrain.dataset", "attacks.recovery.capabilities[*]",
    "attacks.recovery.prompt_init", "attacks.recovery.ood_datasets.*", "unlearn.*.target",
    "model.lora.targets", "model.head", "data.*.features", "data.*.train_split", "data.*.tokenizer",
    "*.precision",
    "aggregate.primary_mia", "recipes",
)  # fmt: skip
HASHES = ("convert.*.sha256",)  # text that must be 64 hex digits: "nosuch" is refused too

Path_ = tuple[str | int, ...]


def leaves(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, (*path, index))
    else:
        yield path, node


def key_of(path: Path_) -> str:
    """``('unlearn', 'k', 0)`` → ``unlearn.k[0]``, as the errors spell it."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def matches(key: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``key`` fits a pattern whose ``*`` stands for anything (brackets literal)."""
    return any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), key) for p in patterns)


def with_value(path: Path_, value: Any) -> dict:
    params = copy.deepcopy(PARAMS)
    node = params
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return params


def checked_leaves(kind: str) -> list[tuple[Path_, str]]:
    """Every leaf of params.yaml whose value is a ``kind``."""
    kinds = KINDS[kind]
    return [(path, key_of(path)) for path, value in leaves(PARAMS) if type(value).__name__ in kinds]


KINDS = {"number": ("int", "float"), "switch": ("bool",), "text": ("str",)}
NUMBERS, BOOLS, STRINGS = (checked_leaves(kind) for kind in KINDS)


def refusal(params: dict) -> str | None:
    """The one-line message ``check_params`` refuses ``params`` with; None if accepted."""
    try:
        check_params(params)
    except (ValueError, KeyError) as error:
        message = error.args[0]
        assert isinstance(message, str) and "\n" not in message, message
        return message
    return None


def assert_refused(path: Path_, value: Any) -> None:
    key = key_of(path)
    message = refusal(with_value(path, value))
    assert message is not None, f"{key} = {value!r} was accepted"
    assert message.startswith(f"{key}: expected "), message
    assert "got " in message, message


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` laid over it, section by section (lists replaced)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else value
    return out


def test_the_real_params_pass() -> None:
    check_params(PARAMS)
    assert len(NUMBERS) > 100 and len(BOOLS) >= 5 and len(STRINGS) > 60  # the walk is real


def test_the_file_as_written_passes_and_derived_keys_are_checked() -> None:
    """``check_params`` completes what it is given, so the file's own keys pass as they are,
    and a bad value where a derived key comes from is refused by its own name."""
    check_params(RAW)
    assert "lr" not in RAW["train_base"] and PARAMS["train_base"]["lr"] == RAW["train"]["lr"]
    bad = merged(RAW, {"train": {"lr": -1.0}})
    assert refusal(bad).startswith("train.lr: expected ")
    bad = merged(RAW, {"train_base": {"eval_modes": ["full_bank"]}})
    assert refusal(bad).startswith("train_base.eval_modes: expected [none]")


@pytest.mark.parametrize("profile", PROFILES, ids=profile_id)
def test_every_profile_passes_laid_over_params(profile: Path) -> None:
    """Profiles are overrides on params.yaml as written (``pfm.profile``), completed after."""
    check_params(merged(RAW, yaml.safe_load(profile.read_text())), devices=False)


@pytest.mark.parametrize(("path", "key"), NUMBERS, ids=[k for _, k in NUMBERS])
def test_every_number_refuses_a_wrong_type_nan_zero_and_negatives(path: Path_, key: str) -> None:
    """Text, a bool and NaN/inf are refused everywhere, a float where an integer belongs
    too; zero and a negative value wherever they mean nothing."""
    value = dict(leaves(PARAMS))[path]
    bad: list[Any] = ["ten", True, math.nan, math.inf]
    if isinstance(value, int):
        bad.append(2.5)
    for wrong in bad:
        assert_refused(path, wrong)
    zero, negative = (0, -1) if isinstance(value, int) else (0.0, -0.5)
    if matches(key, ZERO_ALLOWED):
        assert refusal(with_value(path, zero)) is None
    else:
        assert_refused(path, zero)
    if matches(key, SIGNED):
        assert refusal(with_value(path, negative)) is None
    else:
        assert_refused(path, negative)


@pytest.mark.parametrize(("path", "key"), BOOLS, ids=[k for _, k in BOOLS])
def test_every_switch_refuses_what_is_not_true_or_false(path: Path_, key: str) -> None:
    for wrong in ("yes", 1, 0, None):
        assert_refused(path, wrong)


def test_every_text_refuses_a_number_and_every_name_an_unknown_one() -> None:
    unknown_refused = set()
    for path, key in STRINGS:
        assert_refused(path, 3)
        if refusal(with_value(path, "nosuch")) is not None:
            assert_refused(path, "nosuch")
            unknown_refused.add(key)
    names = {key for _, key in STRINGS if matches(key, NAMES)}
    hashes = {key for _, key in STRINGS if matches(key, HASHES)}
    assert hashes and names | hashes == unknown_refused
    assert len(names) > 30


@pytest.mark.parametrize(
    ("section", "value"),
    [("train", "fast"), ("model", [1]), ("unlearn", None), ("attacks", 3)],
)
def test_a_section_that_is_not_a_mapping_is_named(section: str, value: Any) -> None:
    message = refusal(with_value((section,), value))
    assert message is not None and message.startswith(f"{section}: expected a mapping")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"trian": {}}, "params.yaml: unknown key(s) ['trian']"),
        ({"datasets": []}, "datasets: expected a non-empty list"),
        ({"datasets": ["nosuch"]}, "datasets[0]: expected one of the datasets "),
        ({"methods": ["pfm", "finetun"]}, "methods[1]: expected one of the unlearning methods"),
        ({"workers": 0}, "workers: expected an integer ≥ 1, got 0"),
    ],
)
def test_top_level_keys_are_checked(change: dict, message: str) -> None:
    found = refusal({**copy.deepcopy(PARAMS), **change})
    assert found is not None and found.startswith(message), found


def test_unknown_blocks_and_keys_inside_sections_are_named() -> None:
    data = {**PARAMS["data"], "digts": {}}
    assert refusal(with_value(("data",), data)).startswith("data: expected blocks named after")
    train = {**PARAMS["train"], "epoch": 3}
    assert refusal(with_value(("train",), train)).startswith("train: unknown key(s) ['epoch']")
    recipes = {**PARAMS["unlearn"]}
    del recipes["scrub"]
    assert "no recipe unlearn.scrub" in refusal(with_value(("unlearn",), recipes))


def test_a_yaml_exponent_without_a_dot_is_explained() -> None:
    message = refusal(with_value(("train", "lr"), "1e-3"))
    assert message == (
        "train.lr: expected a finite number > 0 (YAML reads 1e-3 as text: write 1.0e-3), got '1e-3'"
    )


def test_a_device_torch_does_not_know_is_refused() -> None:
    message = refusal(with_value(("train", "device"), "gpu"))
    assert message.startswith("train.device: expected auto or a torch device")
    assert refusal(with_value(("train", "device"), "cpu")) is None


@dataclass(frozen=True)
class _Knobs:
    epochs: Count
    lr: Rate
    blocks: Annotated[int, OneOf((2, 4), "block count")] = 2  # a field added later
    size: Literal[28, 64] = 28
    modes: Annotated[tuple[str, ...], NonEmpty()] = ("a",)
    caps: int | None | tuple[Count | None, ...] = None
    device: Device = "auto"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": "ten"}, "t.epochs: expected an integer ≥ 1, got 'ten'"),
        ({"epochs": 3.0}, "t.epochs: expected an integer ≥ 1, got 3.0"),
        ({"epochs": False}, "t.epochs: expected an integer ≥ 1, got false"),
        ({"lr": math.inf}, "t.lr: expected a finite number > 0, got inf"),
        ({"blocks": 3}, "t.blocks: expected one of the block counts 2, 4, got 3"),
        ({"size": 32}, "t.size: expected one of 28, 64, got 32"),
        ({"modes": "a"}, "t.modes: expected a non-empty list, each item a string, got 'a'"),
        ({"caps": [1, 0]}, "t.caps[1]: expected an integer ≥ 1 or null, got 0"),
    ],
)
def test_from_mapping_checks_each_value_against_its_annotation(values: dict, message: str) -> None:
    with pytest.raises(ParamError) as error:
        from_mapping(_Knobs, {"epochs": 1, "lr": 0.1, **values}, "t")
    assert str(error.value) == message


def test_accepted_values_keep_their_numbers_and_lists_become_tuples() -> None:
    knobs = from_mapping(_Knobs, {"epochs": 2, "lr": 1, "caps": [3, None], "modes": ["b"]}, "t")
    assert knobs == _Knobs(2, 1, caps=(3, None), modes=("b",))
    assert isinstance(knobs.lr, int)  # an int where a float belongs is kept as written


def test_a_param_error_crosses_a_process_boundary_whole() -> None:
    """Side-by-side runs raise in worker processes; the error is pickled back."""
    with pytest.raises(ParamError) as error:
        from_mapping(_Knobs, {"epochs": 0, "lr": 1}, "t")
    copied = pickle.loads(pickle.dumps(error.value))
    assert type(copied) is ParamError and copied.args == error.value.args


def test_matrix_runs_and_load_params_refuse_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match=r"seeds\[0\]: expected an integer ≥ 0, got -1"):
        matrix_runs({**PARAMS, "seeds": [-1]})
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_derived_keys_follow_their_source_unless_set() -> None:
    train = {"epochs": 25, "batch_size": 32, "lr": 0.003, "prompt_lr": None, "device": "auto"}
    params = completed({
        "train": train,
        "train_base": {"epochs": 10, "lr": 0.01},
        "unlearn": {"retrain": None},  # `retrain:` with nothing under it
        "attacks": {"recovery": {"eval_every": 4}},
    })  # fmt: skip
    assert params["train_base"] == {
        "epochs": 10, "lr": 0.01, "batch_size": 32, "device": "auto", "eval_modes": ["none"]
    }  # fmt: skip
    assert params["unlearn"]["retrain"] == {"epochs": 10, "batch_size": 32, "lr": 0.01}
    assert params["attacks"]["recovery"] == {"eval_every": 4}  # its budget is its own
    assert completed(params) == params
    assert completed({"train": "fast", "unlearn": 3}) == {"train": "fast", "unlearn": 3}


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        (["retrain", "pfm"], "samples.methods: pfm cannot forget samples (it serves classes)"),
        (["grad_ascent"], "samples.methods: grad_ascent is measured against retrain, which must"),
    ],
)
def test_the_sample_protocol_runs_methods_that_forget_samples_beside_their_reference(
    methods: list[str], message: str
) -> None:
    found = refusal(with_value(("samples", "methods"), methods))
    assert found is not None and found.startswith(message), found
