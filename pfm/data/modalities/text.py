"""Text: token sequences, int32 (N, 2, T): ``[:, 0]`` token ids and ``[:, 1]`` the attention
mask (1: a real token, 0: padding with id ``PAD_ID``), every row opening with the
tokenizer's first token ([CLS]). Tokenised once by ``prepare`` (``pfm.data.tokens``)."""

import numpy as np
import torch

from pfm.data.modalities.base import MODALITIES, Modality
from pfm.data.transforms import to_token_inputs

PAD_ID = 0  # BERT's [PAD]; masked out wherever it stands


def holds(inputs: np.ndarray) -> bool:
    return inputs.dtype == np.int32 and inputs.ndim == 3 and inputs.shape[1] == 2


def _rows(like: np.ndarray, first: int, tokens: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """(n, 2, T) sequences: ``first`` then ``tokens`` (n, T−1) up to each row's length."""
    n, width = len(lengths), tokens.shape[1] + 1
    mask = torch.arange(width)[None, :] < lengths[:, None]  # (n, T)
    ids = torch.cat([torch.full((n, 1), first), tokens], dim=1).masked_fill(~mask, PAD_ID)
    return torch.stack([ids, mask.long()], dim=1).to(torch.int32).numpy()


def _first_token(like: np.ndarray) -> int:
    return int(np.bincount(like[:, 0, 0]).argmax())  # [CLS]: every prepared row opens with it


def uniform_tokens(
    like: np.ndarray, shape: tuple[int, ...], generator: torch.Generator
) -> np.ndarray:
    """Full-length sequences of ids drawn uniformly from the distinct ids ``like`` holds
    (its real tokens), after its first token: random token sequences in its vocabulary."""
    n, _, width = shape
    vocabulary = torch.from_numpy(np.unique(like[:, 0][like[:, 1] == 1]).astype(np.int64))
    picks = torch.randint(0, len(vocabulary), (n, width - 1), generator=generator)
    return _rows(like, _first_token(like), vocabulary[picks], torch.full((n,), width))


def unigram_tokens(
    like: np.ndarray, shape: tuple[int, ...], generator: torch.Generator
) -> np.ndarray:
    """Sequences of ``like``'s row lengths whose ids follow ``like``'s token frequencies:
    another law than ``uniform_tokens`` (frequent words frequent, lengths varied)."""
    n, _, width = shape
    real = like[:, 0, 1:][like[:, 1, 1:] == 1].astype(np.int64)
    counts = torch.from_numpy(np.bincount(real)).double()
    tokens = torch.multinomial(counts, n * (width - 1), replacement=True, generator=generator)
    lengths = torch.from_numpy(like[:, 1].sum(axis=1).astype(np.int64))
    chosen = lengths[torch.randint(0, len(lengths), (n,), generator=generator)].clamp(max=width)
    return _rows(like, _first_token(like), tokens.view(n, width - 1), chosen)


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
