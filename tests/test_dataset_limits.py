"""Limits that depend on a dataset (k < C, shots within a class's train samples, an image
OOD probe) are refused by stage ``validate`` from the registry's descriptions, before
any data is prepared and so before DVC removes any other stage's outputs."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from transformers import Dinov2Config

from pfm.cli import EXIT_BAD_INPUT
from pfm.data import DATASETS, build_dataset
from pfm.data.prepared import DATA_TYPES
from pfm.data.registry import DESCRIPTIONS, describe
from pfm.validate import check_params
from tests.test_params_validation import merged

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
MARKER = "reports/params_checked.txt"
TWENTY_WORDS = [f"w{i}" for i in range(20)]


def refusal(overrides: dict) -> str:
    with pytest.raises(ValueError) as error:
        check_params(merged(PARAMS, overrides), devices=False)
    return error.value.args[0]


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_is_described_without_building_it(name: str) -> None:
    info = describe(name, PARAMS["data"].get(name) or {})
    assert info.data_type in DATA_TYPES and info.num_classes >= 2
    assert info.train_per_class is None or info.train_per_class >= 1
    assert list(DESCRIPTIONS) == list(DATASETS)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("digits", {}),
        ("digits", {"per_class": 20, "test_fraction": 0.2, "val_fraction": 0.25}),
        ("fashion-mnist", {"train_per_class": 30, "test_per_class": 5, "val_fraction": 0.2}),
    ],
)
def test_a_description_is_what_the_builder_builds(name: str, options: dict) -> None:
    """Known answer: classes, input kind and the smallest class's train samples, exact."""
    if name == "fashion-mnist" and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    info, built = describe(name, options), build_dataset(name, options)
    smallest = int(np.bincount(built.splits["train"].labels).min())
    assert (info.num_classes, info.data_type, info.train_per_class) == (
        built.num_classes, built.data_type, smallest,
    )  # fmt: skip


def test_the_medmnist_counts_are_medmnists_own() -> None:
    medmnist = pytest.importorskip("medmnist")
    from pfm.data.medmnist_sets import MEDMNIST_COUNTS

    for flag, (classes, train, val) in MEDMNIST_COUNTS.items():
        info = medmnist.INFO[flag]
        assert (classes, train, val) == (
            len(info["label"]), info["n_samples"]["train"], info["n_samples"]["val"],
        )  # fmt: skip


SPOKEN = {"datasets": ["spoken-words"], "data": {"spoken-words": {"words": TWENTY_WORDS}}}
RECOVERY_K9 = {"attacks": {"recovery": {"k": [9]}}}
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "unlearn.k = C": (
        {"unlearn": {"k": [1, 10]}},
        "unlearn.k: expected sizes 1 ≤ k < C = 10 (the classes of dataset digits), got [1, 10]",
    ),
    "evaluate.k = C": (
        {"evaluate": {"k": [10]}},
        "evaluate.k: expected sizes 1 ≤ k < C = 10 (the classes of dataset digits), got [10]",
    ),
    "mia.k = C": (
        {"attacks": {"mia": {"k": 10}}},
        "attacks.mia.k: expected sizes 1 ≤ k < C = 10 (the classes of dataset digits), got 10",
    ),
    "mia.k not unlearned": (
        {"attacks": {"mia": {"k": 2}}},
        "attacks.mia.k: expected sizes unlearn.k runs on dataset digits ([1]), got 2",
    ),
    "recovery.k = C": (
        {"attacks": {"recovery": {"k": [1, 12]}}},
        "attacks.recovery.k: expected sizes 1 ≤ k < C = 10 (the classes of dataset digits), "
        "got [1, 12]",
    ),
    "recovery.k not of the protocol's": (
        {"unlearn": {"k": None, "max_sets": 2}, "attacks": {"recovery": {"k": [3]}}},
        "attacks.recovery.k: expected sizes unlearn.k runs on dataset digits ([1, 5, 9]), got [3]",
    ),
    "one cap per k, not per the protocol's": (
        {"unlearn": {"k": None, "max_sets": [5, 5]}},
        "unlearn.max_sets: expected one cap or one per k of [1, 5, 9] (dataset digits), got [5, 5]",
    ),
    "all of C(20,10) sets": (
        {**SPOKEN, "unlearn": {"k": [1, 10], "max_sets": [5, None]}},
        "unlearn.max_sets: on dataset spoken-words, C(20,10) = 184756 sets is too many; "
        "set max_sets",
    ),
    "shots over the smallest class": (
        {"attacks": {"recovery": {"shots": [0, 1, 106]}}},
        "attacks.recovery.shots: expected at most 105 per class (the smallest class of dataset "
        "digits has at most 105 train samples), got [0, 1, 106]",
    ),
    "anchor shots over a subsampled class": (
        {
            "datasets": ["fashion-mnist"],
            "attacks": {"recovery": {"anchor_shots": 181, "ood_datasets": {"image": "digits"}}},
        },
        "attacks.recovery.anchor_shots: expected at most 180 per class (the smallest class of "
        "dataset fashion-mnist has at most 180 train samples), got 181",
    ),  # fmt: skip
    "an input size a ViT does not read": (
        {"model": {"input_size": 24}},
        "model.input_size: 24 px on dataset digits, but backbone 'vit-tiny' reads 16 px only "
        "(its position embeddings are not interpolated)",
    ),
    "an audio set in an image set's OOD list": (
        {"attacks": {"recovery": {"ood_datasets": {"image": ["fashion-mnist", "spoken-words"]}}}},
        "attacks.recovery.ood_datasets.image: expected a dataset of modality image (the OOD "
        "probe of image dataset digits; spoken-words holds audio), got 'spoken-words'",
    ),
    "an audio OOD probe of an image set": (
        {"attacks": {"recovery": {"ood_datasets": {"image": "spoken-words"}}}},
        "attacks.recovery.ood_datasets.image: expected a dataset of modality image (the OOD "
        "probe of image dataset digits; spoken-words holds audio), got 'spoken-words'",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_each_dataset_limit_is_one_line_naming_key_dataset_and_limit(case: str) -> None:
    overrides, message = BAD[case]
    assert refusal(overrides) == message


def test_what_only_does_less_than_asked_passes() -> None:
    """A cap above C-choose-k takes every set (as null does); an OOD probe on the attacked
    dataset itself is skipped there, with a warning; an audio dataset has no OOD probe."""
    # every k = 1 set scored: stage tune draws its sets at a size the report does not score
    above = {"unlearn": {"k": [1, 9], "max_sets": 50}, "tune": {"k": 2}, **RECOVERY_K9}
    assert check_params(merged(PARAMS, above), devices=False) == []
    both = {"datasets": ["digits", "fashion-mnist"]}
    assert check_params(merged(PARAMS, both), devices=False) == [
        "attacks.recovery.ood_datasets.image: fashion-mnist is itself attacked; its recovery "
        "runs have no OOD probe (name another image dataset to measure one)"
    ]
    assert check_params(merged(PARAMS, SPOKEN), devices=False) == []
    each_other = {
        **both,
        "attacks": {"recovery": {"ood_datasets": {"image": list(both["datasets"])}}},
    }
    assert check_params(merged(PARAMS, each_other), devices=False) == []


def fixed_part(path: Any) -> str:
    """A dvc.yaml path (or ``{path: options}``) up to its first ``${...}``, as a folder."""
    text = str(path if isinstance(path, str) else next(iter(path)))
    return text.split("${")[0].rstrip("/") + "/"


def test_every_stage_runs_after_validate() -> None:
    """Every stage but validate depends on its marker, directly or through a stage that
    does: DVC runs validate first, and a refusal there stops every other stage."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outs = {
        name: {fixed_part(o) for key in ("outs", "metrics", "plots") for o in stage.get(key, [])}
        for name, stage in stages.items()
    }
    deps = {name: {fixed_part(d) for d in stage.get("deps", [])} for name, stage in stages.items()}

    def upstream(name: str) -> set[str]:
        return {
            other for other in stages for dep in deps[name] for out in outs[other]
            if other != name and (dep.startswith(out) or out.startswith(dep))
        }  # fmt: skip

    checked, queue = {"validate"}, ["validate"]
    while queue:  # the stages downstream of validate, breadth first
        done = queue.pop()
        later = [s for s in stages if s not in checked and done in upstream(s)]
        checked.update(later)
        queue += later
    assert sorted(checked) == sorted(stages) and len(stages) > 5


def test_the_validate_stage_refuses_k_equal_to_c_and_changes_nothing(tmp_path: Path) -> None:
    marker = tmp_path / MARKER
    marker.parent.mkdir()
    marker.write_text("checked before\n")
    params = merged(PARAMS, {"unlearn": {"k": [1, 10]}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "validate.py"), "--out", MARKER],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr == (
        "error: unlearn.k: expected sizes 1 ≤ k < C = 10 (the classes of dataset digits), "
        "got [1, 10]\n"
    )
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert written == ["params.yaml", "reports", MARKER]  # nothing prepared
    assert marker.read_text() == "checked before\n"


def test_an_input_size_is_checked_against_the_backbones_patches(tmp_path: Path) -> None:
    """DINOv2 interpolates its position embeddings: any whole number of its 14 px patches
    passes (28 px, the evidence profile's), a size that would drop pixels does not."""
    Dinov2Config(image_size=518, patch_size=14).save_pretrained(tmp_path / "dinov2")
    backbone = str(tmp_path / "dinov2")
    assert check_params(merged(PARAMS, {"model": {"backbone": backbone, "input_size": 28}}),
                        devices=False) == []  # fmt: skip
    assert refusal({"model": {"backbone": backbone, "input_size": 30}}) == (
        f"model.input_size: 30 px on dataset digits, but backbone {backbone!r} cuts inputs "
        "into 14 px patches: 30 px would drop the last 2"
    )
