"""The pretrain stage: its backbone never sees a benchmark class, and it loads back through
``from_pretrained`` as exactly the encoder that was trained."""

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

import pfm.pretrain
from pfm.config import from_mapping
from pfm.data import PreparedDataset, build_dataset
from pfm.models.backbones import build_backbone
from pfm.models.checkpoint import frozen_fingerprint
from pfm.pretrain import PretrainParams, check_disjoint, pretrain, save_backbone
from tests.conftest import make_model, toy_dataset

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DEFAULT = from_mapping(PretrainParams, PARAMS["pretrain"], "pretrain")
X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def tiny(params: PretrainParams, **data: object) -> PretrainParams:
    return dataclasses.replace(params, epochs=0, data={**params.data, **data})


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of every dataset that ``pfm.pretrain`` builds."""
    names: list[str] = []

    def spy(name: str, options: dict, where: str = "") -> PreparedDataset:
        names.append(name)
        return build_dataset(name, options)

    monkeypatch.setattr(pfm.pretrain, "build_dataset", spy)
    return names


def test_default_pretraining_never_loads_or_shares_a_benchmark_class(built: list[str]) -> None:
    """The faithful analogue of ImageNet pretraining for MedMNIST: the backbone of the
    default profile is trained on a dataset none of whose classes the benchmark uses."""
    _, pretrained_on, _, _ = pretrain(tiny(DEFAULT, train_per_class=3, test_per_class=1), None)
    assert built == [DEFAULT.dataset]
    for benchmark in PARAMS["datasets"]:
        assert benchmark != DEFAULT.dataset
        classes = build_dataset(benchmark, PARAMS["data"][benchmark]).class_names
        assert not set(classes) & set(pretrained_on.class_names)
    assert {"0", "9"} <= set(build_dataset("digits", {}).class_names)
    assert "sneaker" in pretrained_on.class_names


def toy_pretrain(monkeypatch: pytest.MonkeyPatch, epochs: int) -> tuple:
    monkeypatch.setattr(pfm.pretrain, "build_dataset", lambda *_: toy_dataset())
    params = PretrainParams(
        architecture="vit-tiny", dataset="toy", epochs=epochs, batch_size=8, lr=1e-3
    )
    return pretrain(params, None)


def test_saved_backbone_loads_through_from_pretrained_as_trained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model, dataset, result, test = toy_pretrain(monkeypatch, epochs=1)
    assert len(result.history) == 1 and 0.0 <= test["test.acc"] <= 1.0
    save_backbone(model, dataset, tmp_path / "bb")
    loaded = build_backbone(str(tmp_path / "bb"))
    random = build_backbone("vit-tiny")
    assert (loaded.input_size, loaded.hidden_size) == (random.input_size, random.hidden_size)
    trained = model.backbone.eval()
    with torch.no_grad():
        reference = trained(pixel_values=X).last_hidden_state
        assert torch.allclose(loaded.model(pixel_values=X).last_hidden_state, reference, atol=1e-6)
        assert not torch.allclose(random.model(pixel_values=X).last_hidden_state, reference)
    assert not any(p.requires_grad for p in loaded.model.parameters())  # frozen for the benchmark
    bb = str(tmp_path / "bb")
    assert frozen_fingerprint(make_model(backbone=bb)) == frozen_fingerprint(
        make_model(backbone=bb)
    )


def test_a_benchmark_overlapping_the_pretraining_data_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model, dataset, _, _ = toy_pretrain(monkeypatch, epochs=0)  # classes c0..c3, name "toy"
    save_backbone(model, dataset, tmp_path / "bb")
    bb = str(tmp_path / "bb")
    other = toy_dataset()
    disjoint = dataclasses.replace(other, name="other", class_names=("a", "b", "c", "d"))
    check_disjoint(bb, disjoint)
    check_disjoint("vit-tiny", other)  # a random backbone saw nothing
    with pytest.raises(ValueError, match=r"shared classes: \['c2'\]"):
        check_disjoint(bb, dataclasses.replace(disjoint, class_names=("a", " C2", "x", "y")))
    with pytest.raises(ValueError, match="pretrained on 'toy'"):
        check_disjoint(bb, dataclasses.replace(other, class_names=("a", "b", "c", "d")))
