"""Deep prefixes as PI-Prefix trains them: per-layer key and value rows that each attention
layer of the encoder sees in front of its own keys and values.

What the authors' code does (github.com/PreethiGuru/LLM-Unlearning at commit 8f2960a,
``utils_pi.py``: ``PrefixTuning``, ``inject_prefix_to_model``, ``apply_pinv_to_prefix``;
``pi_prefix.py``; ``inference_pi_prefix.py``): two parameters ``K_p`` and ``V_p``, each
(layers × p × d) with d the model width, drawn N(0, 1). Layer l's ``K_p[l]`` and
``V_p[l]`` are split by columns into the heads, (p, d) → (H, p, d/H), and handed to the
model as that layer's past key/values, so its attention runs over ``[K_p,l ; W_k h]`` and
``[V_p,l ; W_v h]`` — raw rows after the key/value projections, never normed or projected
— with the queries and the sequence unchanged and the attention mask extended by p ones.

Here: one tensor (layers, 2, p, d), d the width of the block's key and value states
(``key_value_width``: the model width, as the authors', unless the attention groups its
key/value heads), ``[:, KEYS]`` the prefix keys and ``[:, VALUES]`` the
prefix values, entering block l's attention exactly there. A forward hook on the key/value
projections cannot do it: transformers' ViT, AST and DINOv2 attention (5.24) lay the
projections out as ``.view(b, n, -1, head_dim)`` with n the query length, so the -1 is
the heads axis, and p extra rows fail — or, where (n + p)·H divides by n, are silently
read as extra heads. (Only Whisper views keys as (b, -1, H, head_dim).) The prefixes are
therefore prepended where transformers has split the heads, through its public
``AttentionInterface``: inside ``deep_prefix`` the backbone runs the attention function
registered here, which prepends block l's prefix to the key and value states it is given
— the outputs of the projections themselves, LoRA's share included — and hands them to
the implementation the backbone had (sdpa; an ``eager`` backbone runs sdpa, the same
math). On exit that implementation is restored, so the encoder is exactly as before.
The one difference from the authors' code: they apply dropout (OPT's 0.1) to the prefix
keys and values while training; ours train without it.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import nn
from transformers import AttentionInterface, PretrainedConfig, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from pfm.models.backbones import encoder_layers

ATTENTION = "pfm_deep_prefix"  # the attention implementation a prefixed backbone runs
KEYS, VALUES = 0, 1  # index into a prefix tensor's second axis


class LayerPrefix(NamedTuple):
    keys: torch.Tensor  # (p, d): rows in front of the layer's own keys
    values: torch.Tensor  # (p, d): rows in front of its own values
    attend: Callable  # the attention implementation the backbone had


_ACTIVE: dict[nn.Module, LayerPrefix] = {}  # every submodule of a prefixed block → its prefix


def key_value_width(config: PretrainedConfig) -> int:
    """How wide a block's keys and values are where transformers hands them to the
    attention function, so how wide its prefix rows must be: the model width, or with
    grouped-query attention (a llama decoder with fewer key/value heads than query heads,
    SmolLM2's 3 of 9) the key/value heads × the head size. The authors' OPT has no
    grouping, so there the two agree."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return (getattr(config, "num_key_value_heads", None) or heads) * head_dim


def split_heads(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(p, d) prefix rows → (b, H, p, d/H), cut into heads by columns as the model cuts its
    own key/value states ``like`` (b, H, n, d/H)."""
    batch, heads, _, head_dim = like.shape
    if rows.shape[-1] != heads * head_dim:
        raise ValueError(
            f"prefix width {rows.shape[-1]} is not the attention width {heads} × {head_dim}"
        )
    per_head = rows.to(like).view(-1, heads, head_dim).transpose(0, 1)  # (H, p, d/H)
    return per_head.expand(batch, -1, -1, -1)


def extend_mask(mask: torch.Tensor | None, p: int) -> torch.Tensor | None:
    """An attention mask over the keys with p prefix columns in front, all attended (the
    authors extend theirs by p ones): 0 in an additive mask, True in a boolean one."""
    if mask is None:
        return None
    attended = True if mask.dtype == torch.bool else 0.0
    return nn.functional.pad(mask, (p, 0), value=attended)


def prefixed_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' attention call for a prefixed block: keys [K_p ; K], values
    [V_p ; V], queries as they are, so every output position stays."""
    prefix = _ACTIVE.get(module)
    if prefix is None:
        raise RuntimeError(f"{type(module).__name__} runs {ATTENTION!r} outside deep_prefix")
    key = torch.cat([split_heads(prefix.keys, key), key], dim=2)
    value = torch.cat([split_heads(prefix.values, value), value], dim=2)
    mask = extend_mask(attention_mask, prefix.keys.shape[0])
    return prefix.attend(module, query, key, value, mask, **kwargs)


AttentionInterface.register(ATTENTION, prefixed_attention)


def layer_prefixes(
    layers: nn.ModuleList, prefixes: torch.Tensor, attend: Callable
) -> dict[nn.Module, LayerPrefix]:
    """Every submodule of block l → block l's prefix: the attention function is handed
    the attention module, found this way without naming anything inside a block."""
    return {
        module: LayerPrefix(prefixes[index, KEYS], prefixes[index, VALUES], attend)
        for index, layer in enumerate(layers)
        for module in layer.modules()
    }


@contextmanager
def deep_prefix(model: PreTrainedModel, prefixes: torch.Tensor) -> Iterator[None]:
    """Within the block, attention in encoder block l of ``model`` runs over
    ``prefixes[l, KEYS]`` / ``prefixes[l, VALUES]`` (p, d) before its own keys/values; the
    backbone's attention implementation is restored on exit, even after an error."""
    layers = encoder_layers(model)
    if prefixes.dim() != 4 or tuple(prefixes.shape[:2]) != (len(layers), 2):
        raise ValueError(
            f"prefixes must be (layers={len(layers)}, 2, p, d), got {tuple(prefixes.shape)}"
        )
    previous = model.config._attn_implementation
    if previous == ATTENTION:
        raise RuntimeError("deep prefixes are already active on this model")
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(previous, sdpa_attention_forward)
    entries = layer_prefixes(layers, prefixes, attend)
    _ACTIVE.update(entries)
    try:
        model.set_attn_implementation(ATTENTION)
        if model.config._attn_implementation != ATTENTION:  # transformers only warns
            raise RuntimeError(f"{type(model).__name__} cannot switch its attention function")
        yield
    finally:
        model.set_attn_implementation(previous)
        for module in entries:
            _ACTIVE.pop(module, None)
