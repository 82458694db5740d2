"""Where class prompts enter an encoder and which of its outputs the head reads.

A backbone's ``TokenLayout`` (``pfm.models.backbones``, chosen by its model type) names
both. ViT, AST and DINOv2 take prompts on their embeddings output and are read at CLS,
exactly as in the authors' code. Whisper's encoder has neither an embeddings submodule
nor a CLS token (its positions are added inside its forward), so its prompts go in
front of the first block's hidden-states input and the head reads the mean over the
non-prompt tokens (a text encoder's mean skips its padding). A causal language model
(llama) takes them in front of its token embeddings and is read at each row's last real
token, the one token that attends to the whole row and to every prompt. Only public hooks are used,
on the module ``embeddings_attr`` names or on the blocks ``encoder_layers`` finds;
leaving the context removes them.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from pfm.models.backbones import TokenLayout, encoder_layers


@contextmanager
def prompts_inserted(
    model: nn.Module, layout: TokenLayout, embeddings_attr: str, tokens: torch.Tensor
) -> Iterator[None]:
    """Within the block, ``model``'s token sequence starts with ``tokens`` (b, n, D)."""
    if layout.site == "embeddings":

        def after_embeddings(_module: nn.Module, _args: tuple, output: torch.Tensor) -> Any:
            return torch.cat([tokens.to(output.dtype), output], dim=1)  # (b, n+1+N, D)

        handle = getattr(model, embeddings_attr).register_forward_hook(after_embeddings)
    elif layout.site == "first_block":

        def before_first_block(_module: nn.Module, args: tuple, kwargs: dict) -> Any:
            hidden, *rest = args  # (b, N, D), positions already added
            return (torch.cat([tokens.to(hidden.dtype), hidden], dim=1), *rest), kwargs

        # prepend: run before any other pre-hook on the block, on the raw hidden states
        handle = encoder_layers(model)[0].register_forward_pre_hook(
            before_first_block, with_kwargs=True, prepend=True
        )
    else:
        raise ValueError(f"unknown prompt site {layout.site!r}")
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def last_block_output(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, the list receives the last encoder block's output (b, T, D):
    the encoder output before its final layer norm, which Whisper's ``hidden_states``
    does not give (transformers ties its last entry to the normed output)."""
    seen: list[torch.Tensor] = []

    def record(_module: nn.Module, _args: tuple, output: Any) -> None:
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = encoder_layers(model)[-1].register_forward_hook(record)
    try:
        yield seen
    finally:
        handle.remove()


READOUTS = ("cls", "mean", "last")  # what the head may read (TokenLayout.readout)


def readout(
    hidden: torch.Tensor,
    n_prompt_tokens: int,
    layout: TokenLayout,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(b, T, D) encoder output → (b, D): the token the head reads. ``mask`` (b, T − n),
    1 on the input's real tokens, padding at the end of each row: the mean skips padding
    (text), as sentence-transformers pools, and ``last`` reads the token at
    n + Σ mask − 1; None: every input token counts."""
    if layout.readout == "cls":
        return hidden[:, n_prompt_tokens]  # CLS sits right after the prompts (AST: DIST next)
    if layout.readout == "mean":
        own = hidden[:, n_prompt_tokens:]  # the input's own tokens only
        if mask is None:
            return own.mean(dim=1)
        weights = mask.to(own.dtype)[..., None]  # (b, T − n, 1)
        return (own * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
    if layout.readout == "last":
        if mask is None:
            return hidden[:, -1]
        last = n_prompt_tokens + mask.sum(dim=1) - 1  # (b,) right padding
        return hidden[torch.arange(len(hidden), device=hidden.device), last]
    raise ValueError(f"unknown readout {layout.readout!r}")
