"""Deep prefixes: p learnable tokens per encoder block, seen by that block's attention only.

Prefix tuning (Li & Liang, ACL 2021) gives every attention layer extra key/value rows.
PI-Prefix (Gurumurthy & Srijith, CIKM 2025) learns them as raw tensors K_p, V_p of shape
(layers × p × d) passed as past key/values. transformers' vision encoders take no past
key/values, and their attention reshapes keys to the query length, so raw K/V rows cannot
be appended from outside. We use the token-space formulation instead (P-Tuning v2, Liu et
al., ACL 2022): block l receives ``[P_l ; h]`` — its p prefix tokens before the sequence —
and its output drops those p positions again, so

    K_p = W_k · LN(P_l),   V_p = W_v · LN(P_l)     (the block's own frozen projections)

reach every real token through attention, while the sequence leaving each block (and so
the CLS index and every block's output) keeps its length. (transformers records block 0's
hooked input as ``hidden_states[0]``, which therefore carries block 0's prefix.) The
difference from PI-Prefix: one (p × d) matrix per layer stands for both K_p and V_p,
through fixed projections, so the pseudo-inverse acts on that matrix.
Only public hooks on the blocks are used; removing them restores the encoder exactly.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


@contextmanager
def deep_prefix(layers: nn.ModuleList, prefixes: torch.Tensor) -> Iterator[None]:
    """Within the block, block ``l`` of ``layers`` sees ``prefixes[l]`` (p, d) before its
    input tokens; the hooks are removed on exit, even after an error."""
    if prefixes.dim() != 3 or prefixes.shape[0] != len(layers):
        raise ValueError(
            f"prefixes must be (layers={len(layers)}, p, d), got {tuple(prefixes.shape)}"
        )
    p = prefixes.shape[1]
    handles = []

    def prepend(index: int) -> Any:
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            hidden, *rest = args  # (b, n, d)
            tokens = prefixes[index].to(hidden.dtype).expand(hidden.shape[0], -1, -1)
            return (torch.cat([tokens, hidden], dim=1), *rest), kwargs  # (b, p+n, d)

        return hook

    def drop(_module: nn.Module, _args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):  # older transformers return (hidden, ...)
            return (output[0][:, p:], *output[1:])
        return output[:, p:]  # (b, n, d)

    try:
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_pre_hook(prepend(index), with_kwargs=True))
            # prepend: trim before transformers' own output-recording hooks read the output
            handles.append(layer.register_forward_hook(drop, prepend=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
