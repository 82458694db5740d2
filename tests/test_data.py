"""Dataset sources, the prepared format, and the offline failure modes."""

import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pfm.data import DATASETS, build_dataset, load_prepared, save_prepared
from pfm.data.embedded import read_idx
from pfm.data.medmnist_sets import MEDMNIST_FLAGS, medmnist_file
from pfm.data.transforms import to_pixel_values


def test_registry_holds_every_promised_dataset() -> None:
    assert {"digits", "fashion-mnist", *MEDMNIST_FLAGS} <= set(DATASETS)


def test_digits_are_real_stratified_and_seeded() -> None:
    data = build_dataset("digits", {})
    sizes = {name: len(split) for name, split in data.splits.items()}
    assert sum(sizes.values()) == 1797 and data.num_classes == 10
    assert data.splits["train"].inputs.shape[1:] == (8, 8, 1)  # stored at source size
    counts = data.counts()
    for name in data.class_names:  # stratified: every class split 60/10/30 up to rounding
        total = sum(counts[s][name] for s in counts)
        assert abs(counts["test"][name] - 0.3 * total) <= 1
        assert abs(counts["val"][name] - 0.1 * total) <= 1
    again = build_dataset("digits", {})
    assert np.array_equal(again.splits["test"].labels, data.splits["test"].labels)
    other = build_dataset("digits", {"split_seed": 1})
    assert not np.array_equal(other.splits["test"].inputs, data.splits["test"].inputs)


def test_splits_do_not_overlap() -> None:
    data = build_dataset("digits", {})
    seen = [{img.tobytes() for img in data.splits[s].inputs} for s in ("train", "val", "test")]
    # digits has a few exact duplicate images; overlaps must stay at that level
    assert len(seen[0] & seen[2]) < 10 and len(seen[1] & seen[2]) < 5


def test_prepared_round_trip_and_counts(tmp_path: Path) -> None:
    data = build_dataset("digits", {"per_class": 20})
    save_prepared(data, tmp_path)
    loaded = load_prepared(tmp_path)
    assert loaded.class_names == data.class_names and loaded.name == "digits"
    for split in ("train", "val", "test"):
        assert np.array_equal(loaded.splits[split].inputs, data.splits[split].inputs)
    counts = (tmp_path / "counts.json").read_text()
    assert '"totals"' in counts and '"per_class"' in counts


def test_unknown_dataset_and_bad_options_are_clear() -> None:
    with pytest.raises(KeyError, match="unknown dataset 'digitz'; valid names: .*digits"):
        build_dataset("digitz", {})
    with pytest.raises(ValueError, match="bad options for dataset 'digits'.*split_seed"):
        build_dataset("digits", {"seed": 1})


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files_and_subsamples(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 100)):
        labels = np.arange(n) % 10
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    data = build_dataset(
        "fashion-mnist", {"root": str(tmp_path), "train_per_class": 20, "test_per_class": 5}
    )
    assert len(data.splits["train"]) + len(data.splits["val"]) == 200
    assert len(data.splits["test"]) == 50
    assert data.splits["train"].inputs.shape[1:] == (28, 28, 1)
    assert data.class_names[9] == "ankle boot"


def test_fashion_mnist_missing_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        build_dataset("fashion-mnist", {"root": str(tmp_path)})


def test_truncated_idx_is_refused(tmp_path: Path) -> None:
    _write_idx(tmp_path / "x.gz", np.zeros((4, 2, 2)))
    with gzip.open(tmp_path / "x.gz") as handle:
        raw = handle.read()
    with gzip.open(tmp_path / "x.gz", "wb") as handle:
        handle.write(raw[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "x.gz")


def _fake_medmnist_npz(path: Path, rgb: bool) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 16), ("test", 16)):
        shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 8).reshape(n, 1)
    np.savez_compressed(path, **arrays)


def test_medmnist_loads_through_the_package_api(tmp_path: Path) -> None:
    _fake_medmnist_npz(tmp_path / "bloodmnist.npz", rgb=True)
    data = build_dataset("bloodmnist", {"root": str(tmp_path), "size": 28})
    assert data.num_classes == 8 and data.class_names[0] == "basophil"
    assert data.splits["train"].inputs.shape == (40, 28, 28, 3)
    assert data.splits["test"].labels.shape == (16,)


def test_medmnist_train_on_val_as_the_authors_do_for_octmnist(tmp_path: Path) -> None:
    _fake_medmnist_npz(tmp_path / "bloodmnist.npz", rgb=False)
    data = build_dataset(
        "bloodmnist", {"root": str(tmp_path), "train_split": "val", "val_fraction": 0.5}
    )
    assert len(data.splits["train"]) + len(data.splits["val"]) == 16
    assert data.splits["train"].inputs.shape[1:] == (28, 28, 1)


def test_medmnist_missing_offline_names_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        build_dataset("dermamnist", {"root": str(tmp_path / "raw"), "size": 224})
    message = str(error.value)
    assert "dermamnist_224.npz" in message and str(tmp_path / "raw") in message
    assert not (tmp_path / "raw").exists()  # nothing written


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on loopback standing in for the dataset host."""
    served = tmp_path / "served"
    served.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()


def test_medmnist_download_uses_medmnists_downloader(
    local_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medmnist

    url, served = local_server
    _fake_medmnist_npz(served / "blood.npz", rgb=True)
    md5 = hashlib.md5((served / "blood.npz").read_bytes()).hexdigest()
    monkeypatch.setitem(medmnist.INFO["bloodmnist"], "url", f"{url}/blood.npz")
    monkeypatch.setitem(medmnist.INFO["bloodmnist"], "MD5", md5)
    root = tmp_path / "raw"
    data = build_dataset("bloodmnist", {"root": str(root), "download": True})
    assert medmnist_file("bloodmnist", root, 28).is_file()
    assert len(data.splits["train"]) == 40


def test_pixel_values_are_resized_three_channel_and_normalised() -> None:
    gray = torch.zeros(2, 8, 8, 1, dtype=torch.uint8)
    gray[0] = 255
    x = to_pixel_values(gray, 32)
    assert x.shape == (2, 3, 32, 32)
    assert torch.allclose(x[0], torch.ones_like(x[0])) and torch.allclose(
        x[1], -torch.ones_like(x[1])
    )
    rgb = torch.randint(0, 256, (1, 28, 28, 3), dtype=torch.uint8)
    assert torch.allclose(to_pixel_values(rgb, 28), (rgb.permute(0, 3, 1, 2) / 255.0 - 0.5) / 0.5)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        to_pixel_values(torch.zeros(1, 4, 4, 2, dtype=torch.uint8), 4)
