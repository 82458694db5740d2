"""Text: token sequences, int32 (N, 2, T): ``[:, 0]`` token ids and ``[:, 1]`` the attention
mask (1: a real token, 0: padding at the row's end, masked out whatever its id: the
tokenizer's pad token in prepared rows, ``PAD_ID`` in drawn ones). Rows open with the
tokenizer's first token where it adds one (MiniLM's [CLS]), else with the text's own
first token (SmolLM2 adds no BOS). Tokenised once by ``prepare`` (``pfm.data.tokens``)."""

import numpy as np
import torch

from pfm.data.modalities.base import MODALITIES, Modality
from pfm.data.transforms import to_token_inputs

PAD_ID = 0  # BERT's [PAD] (SmolLM2's <|endoftext|>); masked out wherever it stands


def holds(inputs: np.ndarray) -> bool:
    return inputs.dtype == np.int32 and inputs.ndim == 3 and inputs.shape[1] == 2


def _rows(
    like: np.ndarray, first: int | None, tokens: torch.Tensor, lengths: torch.Tensor
) -> np.ndarray:
    """(n, 2, T) sequences: ``first`` then ``tokens`` (n, T−1) up to each row's length;
    ``first`` None: ``tokens`` (n, T) alone."""
    n = len(lengths)
    if first is not None:
        tokens = torch.cat([torch.full((n, 1), first), tokens], dim=1)
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]  # (n, T)
    ids = tokens.masked_fill(~mask, PAD_ID)
    return torch.stack([ids, mask.long()], dim=1).to(torch.int32).numpy()


def _first_token(like: np.ndarray) -> int | None:
    """The token every row of ``like`` opens with ([CLS]), kept first in drawn rows too;
    None where rows open with their own text (no BOS), drawn like the rest."""
    firsts = np.unique(like[:, 0, 0])
    return int(firsts[0]) if len(firsts) == 1 else None


def uniform_tokens(
    like: np.ndarray, shape: tuple[int, ...], generator: torch.Generator
) -> np.ndarray:
    """Full-length sequences of ids drawn uniformly from the distinct ids ``like`` holds
    (its real tokens), after the first token its rows share (if they do): random token
    sequences in its vocabulary."""
    n, _, width = shape
    first = _first_token(like)
    skip = int(first is not None)  # a shared first token stays; the rest are drawn
    vocabulary = torch.from_numpy(np.unique(like[:, 0][like[:, 1] == 1]).astype(np.int64))
    picks = torch.randint(0, len(vocabulary), (n, width - skip), generator=generator)
    return _rows(like, first, vocabulary[picks], torch.full((n,), width))


def unigram_tokens(
    like: np.ndarray, shape: tuple[int, ...], generator: torch.Generator
) -> np.ndarray:
    """Sequences of ``like``'s row lengths whose ids follow ``like``'s token frequencies:
    another law than ``uniform_tokens`` (frequent words frequent, lengths varied)."""
    n, _, width = shape
    first = _first_token(like)
    skip = int(first is not None)  # a shared first token stays; the rest are drawn
    real = like[:, 0, skip:][like[:, 1, skip:] == 1].astype(np.int64)
    counts = torch.from_numpy(np.bincount(real)).double()
    tokens = torch.multinomial(counts, n * (width - skip), replacement=True, generator=generator)
    lengths = torch.from_numpy(like[:, 1].sum(axis=1).astype(np.int64))
    chosen = lengths[torch.randint(0, len(lengths), (n,), generator=generator)].clamp(max=width)
    return _rows(like, first, tokens.view(n, width - skip), chosen)


TEXT = MODALITIES.register("text")(
    Modality(
        layout="int32 token ids and attention mask (N, 2, T)",
        holds=holds,
        to_encoder=to_token_inputs,
        noise=uniform_tokens,
        probe=unigram_tokens,
        backbone_param="text_backbone",
    )
)
