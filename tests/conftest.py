"""Shared fixtures: small real models and datasets that build in well under a second."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pfm.data.prepared import PreparedDataset, Split
from pfm.models.prompted import ModelSpec, PromptedClassifier, build_model
from pfm.unlearn.data import CountedSplit

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").rglob("*.yaml"))  # every profile, profiles/cuts/ too


def profile_id(path: Path | None) -> str:
    """A profile's test id: its path under profiles/ (None: params.yaml alone)."""
    return "params.yaml" if path is None else path.relative_to(ROOT / "profiles").as_posix()


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def smollm2() -> object:
    """SmolLM2 converted from its wheel's GGUF file (``CausalLM``), once per session: the
    converter's tests and the backbone's share it (a conversion reads the file twice)."""
    from pfm.models.convert import smollm2_gguf

    return smollm2_gguf.convert(smollm2_gguf.source_file())


def make_model(
    num_classes: int = 4, seed: int = 0, backbone: str = "vit-tiny", **spec: object
) -> PromptedClassifier:
    return build_model(ModelSpec(backbone=backbone, num_classes=num_classes, **spec), seed=seed)


@pytest.fixture
def model() -> PromptedClassifier:
    return make_model().eval()


def toy_dataset(
    num_classes: int = 4, per_class: int = 6, size: int = 8, seed: int = 0
) -> PreparedDataset:
    """Class c is a bright square at a class-specific corner: learnable in a few steps."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> Split:
        labels = np.repeat(np.arange(num_classes), n)
        images = rng.integers(0, 40, size=(len(labels), size, size, 1), dtype=np.uint8)
        for i, c in enumerate(labels):
            r, col = divmod(int(c), 2)
            images[i, r * 4 : r * 4 + 4, col * 4 : col * 4 + 4] = 255
        return Split(images, labels.astype(np.int64))

    return PreparedDataset(
        name="toy",
        class_names=tuple(f"c{i}" for i in range(num_classes)),
        splits={"train": split(per_class), "val": split(2), "test": split(3)},
    )


@pytest.fixture
def seen_labels(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every label any unlearning data handle yields during the test: what a method
    actually read, as opposed to what it was meant to be given."""
    seen: list[int] = []
    original = CountedSplit.marked_batches  # plain batches come from it too

    def recording(self, batch_size, order=None):  # noqa: ANN001, ANN202
        for batch in original(self, batch_size, order):
            seen.extend(batch.labels.tolist())
            yield batch

    monkeypatch.setattr(CountedSplit, "marked_batches", recording)
    return seen
