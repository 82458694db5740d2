"""Audio: AST features, the prepared audio format, UrbanSound8K's folds on a fake release,
the synthesised spoken-word set, and the prompted model on ``ast-tiny``."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from transformers import ASTConfig, ASTModel

import pfm.data.speech_synth
from pfm.batches import SplitTensors
from pfm.data import build_dataset, load_prepared, save_prepared
from pfm.data.audio_features import MEL_BINS, featurise, log_mel
from pfm.data.audio_io import SAMPLE_RATE, load_mono
from pfm.data.prepared import ARRAYS_FILE, PreparedDataset, Split
from pfm.data.speech_synth import Effects, Voice, synthesise
from pfm.data.transforms import to_input_values
from pfm.models.checkpoint import load_model, save_model
from pfm.models.prompted import PromptedClassifier
from pfm.reporting.aggregate import AggregateParams
from pfm.reporting.report import render, transfer_line
from pfm.specs import check_modality, model_spec
from tests.conftest import make_model
from tests.test_stages import PARAMS, stage

RNG = np.random.default_rng(0)
HAS_TOOLS = all(shutil.which(tool) for tool in ("espeak-ng", "sox"))
needs_tools = pytest.mark.skipif(not HAS_TOOLS, reason="espeak-ng and sox not installed")
TINY_WORDS = {
    "words": ["zero", "one"],
    "accents": ["en-us"],
    "variants": ["m1", "f2", "m3"],
    "speeds": [130, 170],
    "pitches": [50],
    "workers": 2,
}


def tone(seconds: float, hz: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t) + 0.01 * RNG.standard_normal(len(t))).astype(
        np.float32
    )


def test_log_mel_has_ast_shape_100_frames_a_second() -> None:
    features = log_mel(tone(1.0, 440.0))
    assert features.shape == (1 + (SAMPLE_RATE - 400) // 160, MEL_BINS)  # 25 ms / 10 ms
    assert features.dtype == np.float32
    assert log_mel(np.zeros(100, np.float32)).shape == (1, MEL_BINS)  # shorter than a window


def test_featurise_normalises_with_train_statistics_and_pads_with_zero() -> None:
    clips = {
        "train": [tone(1.2, hz) for hz in (200.0, 500.0, 900.0)],
        "test": [tone(0.3, 700.0)],
    }
    features, (mean, std) = featurise(clips, frames=100)
    train = features["train"].astype(np.float64)
    assert features["train"].shape == (3, 100, MEL_BINS) and features["train"].dtype == np.float16
    # AST's (x − mean) / (2·std): the (uncropped) train frames have mean 0 and std 0.5
    raw = np.concatenate([log_mel(c) for c in clips["train"]])
    assert np.isclose(raw.mean(), mean) and np.isclose(raw.std(), std)
    assert abs(train.mean()) < 0.05 and abs(train.std() - 0.5) < 0.05
    test = features["test"][0]
    real_frames = len(log_mel(clips["test"][0]))
    assert real_frames < 100 and np.all(test[real_frames:] == 0)  # padded with the mean
    expected = (log_mel(clips["test"][0]) - mean) / (2 * std)
    assert np.allclose(test[:real_frames], expected, atol=2e-3)  # float16 storage


def test_features_are_deterministic() -> None:
    clip = tone(0.8, 330.0)
    first, _ = featurise({"train": [clip, clip * 0.5]}, frames=90)
    again, _ = featurise({"train": [clip.copy(), clip * 0.5]}, frames=90)
    assert first["train"].tobytes() == again["train"].tobytes()


def test_load_mono_averages_channels_and_resamples(tmp_path: Path) -> None:
    stereo = np.stack([tone(0.5, 300.0, 8000), tone(0.5, 300.0, 8000)], axis=1)
    soundfile.write(tmp_path / "a.wav", stereo, 8000)
    wave = load_mono(tmp_path / "a.wav")
    assert wave.ndim == 1 and wave.dtype == np.float32 and len(wave) == SAMPLE_RATE // 2
    assert len(load_mono(tmp_path / "a.wav", max_seconds=0.25)) == SAMPLE_RATE // 4


def test_batches_crop_or_pad_features_to_the_backbone_frames() -> None:
    features = torch.ones(2, 50, MEL_BINS, dtype=torch.float16)
    padded = to_input_values(features, 80)
    assert padded.shape == (2, 80, MEL_BINS) and padded.dtype == torch.float32
    assert padded[:, :50].eq(1).all() and padded[:, 50:].eq(0).all()
    assert to_input_values(features, 20).shape == (2, 20, MEL_BINS)
    split = Split(features.numpy(), np.array([0, 1]))
    x, y = next(SplitTensors(split, 100, torch.device("cpu")).batches(2))
    assert x.shape == (2, 100, MEL_BINS) and y.tolist() == [0, 1]


def audio_dataset(num_classes: int = 3, per_class: int = 4, frames: int = 100) -> PreparedDataset:
    def split(n: int) -> Split:
        labels = np.repeat(np.arange(num_classes), n)
        return Split(
            RNG.standard_normal((len(labels), frames, MEL_BINS)).astype(np.float16), labels
        )

    return PreparedDataset(
        name="toy-audio",
        class_names=tuple(f"w{i}" for i in range(num_classes)),
        splits={"train": split(per_class), "val": split(1), "test": split(2), "real": split(1)},
        data_type="audio",
        feature_norm=(-4.0, 3.0),
    )


def test_prepared_audio_round_trip_keeps_type_norm_and_real_split(tmp_path: Path) -> None:
    data = audio_dataset()
    save_prepared(data, tmp_path)
    loaded = load_prepared(tmp_path)
    assert loaded.data_type == "audio" and loaded.feature_norm == (-4.0, 3.0)
    assert set(loaded.splits) == {"train", "val", "test", "real"}
    assert loaded.splits["real"].inputs.tobytes() == data.splits["real"].inputs.tobytes()


def test_image_files_written_before_data_type_still_load(tmp_path: Path) -> None:
    images = np.zeros((2, 4, 4, 1), np.uint8)
    arrays = {"class_names": np.array(["a", "b"])}
    for s in ("train", "val", "test"):
        arrays[f"{s}_images"], arrays[f"{s}_labels"] = images, np.array([0, 1])
    np.savez_compressed(tmp_path / ARRAYS_FILE, **arrays)
    (tmp_path / "counts.json").write_text('{"name": "old"}')
    loaded = load_prepared(tmp_path)
    assert loaded.data_type == "image" and loaded.feature_norm is None


def test_mixed_modalities_and_unknown_splits_are_refused() -> None:
    data = audio_dataset()
    image = Split(np.zeros((1, 4, 4, 1), np.uint8), np.array([0]))
    with pytest.raises(ValueError, match="holds image inputs in a audio dataset"):
        PreparedDataset("x", data.class_names, {**data.splits, "real": image}, "audio")
    with pytest.raises(ValueError, match="plus optionally"):
        PreparedDataset("x", data.class_names, {**data.splits, "extra": image}, "audio")
    with pytest.raises(ValueError, match="float features .* uint8 images .* token ids"):
        Split(np.zeros((2, 3), np.float32), np.array([0, 1]))


# ---- UrbanSound8K on a fake release in the official layout ----

US8K_CLASSES = ("air_conditioner", "car_horn", "dog_bark")


def fake_urbansound(root: Path, folds: range = range(1, 5), per_fold: int = 2) -> None:
    """Two slices per class in every fold; 44.1 kHz stereo, as many release files are."""
    (root / "metadata").mkdir(parents=True)
    rows = []
    for fold in folds:
        (root / "audio" / f"fold{fold}").mkdir(parents=True)
        for class_id, name in enumerate(US8K_CLASSES):
            for i in range(per_fold):
                file = f"{100 + fold}-{class_id}-0-{i}.wav"
                wave = tone(0.5 + 0.1 * i, 200.0 * (class_id + 1), 44100)
                soundfile.write(
                    root / "audio" / f"fold{fold}" / file, np.stack([wave] * 2, 1), 44100
                )
                rows.append([file, 100 + fold, 0.0, 0.5, 1, fold, class_id, name])
    with (root / "metadata" / "UrbanSound8K.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold",
                         "classID", "class"])  # fmt: skip
        writer.writerows(rows)


def test_urbansound8k_splits_by_official_fold(tmp_path: Path) -> None:
    fake_urbansound(tmp_path)
    options = {"root": str(tmp_path), "train_folds": [1, 2], "val_folds": [3],
               "test_folds": [4], "frames": 60}  # fmt: skip
    data = build_dataset("urbansound8k", options)
    assert data.data_type == "audio" and data.class_names == US8K_CLASSES
    sizes = {s: len(split) for s, split in data.splits.items()}
    assert sizes == {"train": 12, "val": 6, "test": 6}  # 3 classes × 2 slices × folds
    assert data.splits["test"].inputs.shape == (6, 60, MEL_BINS)
    assert set(data.counts()["test"].values()) == {2}
    capped = build_dataset("urbansound8k", {**options, "per_class": 1})
    assert {s: len(split) for s, split in capped.splits.items()} == {
        "train": 3,
        "val": 3,
        "test": 3,
    }
    left_out = build_dataset("urbansound8k", {**options, "train_folds": [1]})
    assert len(left_out.splits["train"]) == 6  # fold 2 in no list: unused


def test_urbansound8k_fold_lists_must_be_disjoint_official_folds(tmp_path: Path) -> None:
    fake_urbansound(tmp_path)
    with pytest.raises(ValueError, match="fold 3 is in both train and val"):
        build_dataset(
            "urbansound8k", {"root": str(tmp_path), "train_folds": [1, 3], "val_folds": [3]}
        )
    out_of_range = r"test_folds\[0\]: expected an integer in \[1, 10\], got 11"
    with pytest.raises(ValueError, match=out_of_range):
        build_dataset("urbansound8k", {"root": str(tmp_path), "test_folds": [11]})


def test_urbansound8k_missing_release_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"metadata/UrbanSound8K.csv and .*fold1..fold10"):
        build_dataset("urbansound8k", {"root": str(tmp_path / "none")})
    fake_urbansound(tmp_path / "us", folds=range(1, 11), per_fold=1)
    (tmp_path / "us" / "audio" / "fold10" / "110-2-0-0.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 file\(s\) missing, e.g. .*fold10/110-2-0-0"):
        build_dataset("urbansound8k", {"root": str(tmp_path / "us")})


# ---- the synthesised spoken-word set ----


def test_yaml_booleans_as_words_are_refused() -> None:
    with pytest.raises(ValueError, match="YAML reads yes/no/on/off as true/false: quote it"):
        build_dataset("spoken-words", {**TINY_WORDS, "words": yaml.safe_load("[yes, no]")})


def test_missing_synthesiser_names_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pfm.data.speech_synth.shutil, "which", lambda tool: None)
    with pytest.raises(FileNotFoundError, match="install Debian packages espeak-ng sox"):
        build_dataset("spoken-words", TINY_WORDS)


@needs_tools
def test_synthesis_deduplicates_by_content_and_repeats_exactly() -> None:
    voice = Voice("en-us", "m1", 150, 50)
    effects = Effects((0.9, 1.1), (-1.0, 1.0), (-6.0, 0.0), (15.0, 30.0))
    waves, labels, names = synthesise(["yes", "no"], [voice, voice], effects, seed=0, workers=2)
    assert labels.tolist() == [0, 1] and len(names) == 2  # the repeated voice is one clip
    again, _, _ = synthesise(["yes", "no"], [voice], effects, seed=0, workers=1)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(waves, again, strict=True))
    other, _, _ = synthesise(["yes", "no"], [voice], effects, seed=1, workers=1)
    assert waves[0].tobytes() != other[0].tobytes()  # the seed draws the effects and noise


@needs_tools
def test_spoken_words_builds_audio_splits_and_a_real_split() -> None:
    data = build_dataset("spoken-words", {**TINY_WORDS, "frames": 80})
    assert data.data_type == "audio" and data.class_names == ("zero", "one")
    assert data.splits["train"].inputs.shape[1:] == (80, MEL_BINS)
    assert sum(len(data.splits[s]) for s in ("train", "val", "test")) == 12
    if Path("/usr/share/asterisk/sounds/en/digits/0.wav").is_file():
        assert data.splits["real"].labels.tolist() == [0, 1]  # one studio take per word
    no_real = build_dataset("spoken-words", {**TINY_WORDS, "frames": 80, "real_root": None})
    assert "real" not in no_real.splits
    # the real split is normalised with the train statistics, so it changes no other split
    assert no_real.splits["test"].inputs.tobytes() == data.splits["test"].inputs.tobytes()


@needs_tools
def test_prepare_stage_builds_spoken_words_end_to_end(tmp_path: Path) -> None:
    params = {**PARAMS, "data": {**PARAMS["data"], "spoken-words": {**TINY_WORDS, "frames": 100}}}
    result = stage(
        "prepare", "--dataset", "spoken-words", "--out", "out", cwd=tmp_path, params=params
    )
    assert result.returncode == 0, result.stderr
    assert "prepared spoken-words: 2 classes" in result.stdout
    prepared = load_prepared(tmp_path / "out")
    assert prepared.data_type == "audio" and prepared.feature_norm is not None
    again = build_dataset("spoken-words", params["data"]["spoken-words"])
    assert prepared.splits["train"].inputs.tobytes() == again.splits["train"].inputs.tobytes()


# ---- the prompted model on ast-tiny ----

AUDIO_X = torch.randn(3, 100, MEL_BINS, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def ast_model() -> PromptedClassifier:
    return make_model(backbone="ast-tiny").eval()


def test_ast_tiny_reads_audio_by_its_own_keyword(ast_model: PromptedClassifier) -> None:
    assert (ast_model.data_type, ast_model.input_name, ast_model.input_size) == (
        "audio", "input_values", 100
    )  # fmt: skip
    spec = model_spec({**PARAMS["model"]}, 4, with_prompts=True, data_type="audio")
    assert spec.backbone == PARAMS["model"]["audio_backbone"] and spec.input_size is None


def test_ast_prompts_sit_before_cls_and_dist(ast_model: PromptedClassifier) -> None:
    """[prompts ; CLS ; DIST ; patches]: the head reads CLS at index = prompt count."""
    base = ast_model.backbone
    tokens = base.embeddings(AUDIO_X)  # (B, 2+N, D)
    assert tokens.shape[1] == 2 + 8 * 6  # 128/16 mel × 100/16 time patches
    prompts = torch.cat([ast_model.prompts[c] for c in (2, 0)])
    sequence = torch.cat([prompts.expand(len(AUDIO_X), -1, -1), tokens], dim=1)
    handle = base.embeddings.register_forward_hook(lambda _m, _a, _o: sequence)
    try:
        with torch.no_grad():
            out = base(input_values=AUDIO_X, output_hidden_states=True)
    finally:
        handle.remove()
    reference = ast_model.head(out.hidden_states[-1][:, 2])
    with torch.no_grad():
        logits = ast_model(AUDIO_X, torch.tensor([[2, 0]] * 3))
    assert torch.allclose(logits, reference, atol=1e-5)


def test_ast_model_trains_forgets_and_round_trips(tmp_path: Path) -> None:
    model = make_model(backbone="ast-tiny")
    loss = model(AUDIO_X, torch.tensor([[0, 1]] * 3)).logsumexp(1).mean()
    loss.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert "prompts" in trained and any("lora_" in n for n in trained)
    assert not any(p.grad is not None for p in model.backbone.parameters() if not p.requires_grad)
    forgotten = model.eval().forget([1])
    assert forgotten.bank_classes == [0, 2, 3] and forgotten.input_name == "input_values"
    with pytest.raises(KeyError, match="no prompt"):
        forgotten(AUDIO_X, torch.tensor([[1]] * 3))
    save_model(forgotten, tmp_path / "m.pt")
    restored = load_model(tmp_path / "m.pt").eval()
    ids = torch.tensor([[0, 2, 3]] * 3)
    with torch.no_grad():
        assert torch.equal(restored(AUDIO_X, ids), forgotten(AUDIO_X, ids))


@needs_tools
def test_train_and_evaluate_stages_run_on_audio_with_real_transfer_keys(tmp_path: Path) -> None:
    save_prepared(build_dataset("spoken-words", TINY_WORDS), tmp_path / "data")
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["train"].update(epochs=1, eval_modes=["full_bank"])
    params["evaluate"].update(k=[1], max_sets=1, modes=["full_bank"])
    paths = ["--model", "m.pt", "--checkpoint", "c.pt", "--metrics", "t.json"]
    result = stage("train", "--data", "data", "--seed", "0", *paths, "--history", "h.json",
                   cwd=tmp_path, params=params)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert load_model(tmp_path / "m.pt").spec.backbone == "ast-tiny"  # model.audio_backbone
    result = stage("evaluate", "--data", "data", "--model", "m.pt", "--seed", "0",
                   "--out", "e.json", cwd=tmp_path, params=params)  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert 0 <= metrics["real.no_forget.full_bank.acc"] <= 1 and metrics["real.classes"] == 2
    assert {"real.k1.forget_acc.mean", "real.k1.retain_acc.mean", "k1.forget_acc.mean"} <= set(
        metrics
    )


def test_an_image_backbone_on_audio_data_is_refused() -> None:
    with pytest.raises(ValueError, match="reads image input but the dataset holds audio: set "
                       "model.audio_backbone"):  # fmt: skip
        check_modality("vit-tiny", make_model().data_type, "audio")
    check_modality("ast-tiny", make_model(backbone="ast-tiny").data_type, "audio")


def test_report_shows_synthetic_to_real_transfer() -> None:
    summary = {
        "sw.pfm.eval.real.no_forget.full_bank.acc.mean": 0.4,
        "sw.pfm.eval.real.no_forget.full_bank.acc.std": 0.0,
        "sw.pfm.eval.real.k1.forget_acc.mean": 0.1,
        "sw.pfm.eval.real.k1.forget_acc.std": 0.3,
        "sw.pfm.eval.real.k1.retain_acc.mean": 0.5,
        "sw.pfm.eval.real.k1.retain_acc.std": 0.05,
        "sw.pfm.eval.real.classes.mean": 10.0,
        "sw.pfm.k1.retain_acc.mean": 0.6,
        "sw.pfm.seeds": 1.0,
    }
    assert transfer_line(summary, "sw")[0] == (
        "Real recordings (`real` split, 10 classes), prompt model: no-forget acc (full_bank) "
        "0.400 ± 0.000; forgotten acc (k=1) 0.100 ± 0.300; retained acc (k=1) 0.500 ± 0.050."
    )
    assert transfer_line(summary, "digits") == []
    config = AggregateParams(
        k=1, profile="p", margin=0.05, primary_mia="loss_auc", specificity_max=0.2
    )
    assert "Real recordings" in render(summary, config, [], {})


def test_a_local_ast_directory_loads_as_an_audio_backbone(tmp_path: Path) -> None:
    """The paper profile's path: an AST saved with ``save_pretrained`` (here a small one
    with AST's own overlapping strides) loads offline, its frame count read from
    ``max_length``."""
    config = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, max_length=48, num_mel_bins=128)  # fmt: skip
    ASTModel(config).save_pretrained(tmp_path / "ast")
    model = make_model(backbone=str(tmp_path / "ast")).eval()
    assert (model.data_type, model.input_size) == ("audio", 48)
    x = to_input_values(torch.randn(2, 100, MEL_BINS), model.input_size)  # cropped to 48
    with torch.no_grad():
        assert model(x, torch.tensor([[0, 1, 2, 3]] * 2)).shape == (2, 4)
