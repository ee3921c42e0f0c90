"""transformers 4.x names that 2024 remote code imports or calls and transformers 5 removed.

Each piece restores an API with its 4.x meaning, so the third-party files run unchanged. They are
additive (new names; nothing native is replaced) and installed only by the families that need them
(`remote.FAMILIES`), when `--trust-remote-code` loads such a model.

- `transformers.modeling_attn_mask_utils` (removed in transformers 5.0, masks moved to
  `masking_utils`): `_prepare_4d_attention_mask` (MiniCPM-V's SigLIP) and
  `_prepare_4d_causal_attention_mask` (Phi-3-vision) rebuilt with their 4.x semantics: additive
  float masks, `finfo(dtype).min` where a key may not be attended.
- `DynamicCache.from_legacy_cache` / `to_legacy_cache` / `get_usable_length` / `get_max_length` /
  `seen_tokens` (deprecated in 4.4x, removed in 5.0): Phi-3-vision's decoder converts tuples to a
  cache and back on every forward.
- `typing.List` reachable through `from torch.nn.functional import *` (torch 2.14 no longer has
  `List` in `torch.nn.functional`; the 2.x releases of 2024 did): MiniCPM-V's resampler.py
  annotates with `List` and relies on that star import for the name.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Any

import torch


def _prepare_4d_attention_mask(mask: torch.Tensor, dtype: torch.dtype, tgt_len: int | None = None) -> torch.Tensor:
    """[batch, keys] 1/0 mask → [batch, 1, queries, keys] additive mask (no causality), as in 4.x."""
    batch, source = mask.shape
    target = source if tgt_len is None else tgt_len
    expanded = mask[:, None, None, :].expand(batch, 1, target, source).to(dtype)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


def _prepare_4d_causal_attention_mask(attention_mask: torch.Tensor | None, input_shape: Any,
                                      inputs_embeds: torch.Tensor, past_key_values_length: int,
                                      sliding_window: int | None = None) -> torch.Tensor:
    """Causal (and sliding-window) additive mask over past + new keys, padding masked, as the 4.38
    `AttentionMaskConverter` (Phi-3-vision's version) built it: a query at position p sees keys k with
    p - sliding_window < k <= p. (Later 4.x releases widened the window by one key.)"""
    batch, queries = int(input_shape[0]), int(input_shape[-1])
    keys = queries + past_key_values_length
    dtype, device = inputs_embeds.dtype, inputs_embeds.device
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask
    query_pos = torch.arange(queries, device=device)[:, None] + past_key_values_length
    key_pos = torch.arange(keys, device=device)[None, :]
    allowed = key_pos <= query_pos
    if sliding_window is not None:
        allowed &= key_pos > query_pos - sliding_window
    allowed = allowed[None, None].expand(batch, 1, queries, keys)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :].to(torch.bool)
    mask = torch.zeros(batch, 1, queries, keys, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def install_mask_utils() -> None:
    """Make `transformers.modeling_attn_mask_utils` importable again (idempotent)."""
    name = "transformers.modeling_attn_mask_utils"
    if name in sys.modules:
        return
    module = types.ModuleType(name, "transformers 4.x attention-mask helpers, restored by classbench for remote code.")
    module._prepare_4d_attention_mask = _prepare_4d_attention_mask  # type: ignore[attr-defined]
    module._prepare_4d_causal_attention_mask = _prepare_4d_causal_attention_mask  # type: ignore[attr-defined]
    sys.modules[name] = module


def install_functional_typing_names() -> None:
    """Let `from torch.nn.functional import *` bring `List`/`Optional`/`Tuple` again, as torch once did."""
    import torch.nn.functional as functional

    for name in ("List", "Optional", "Tuple"):
        if not hasattr(functional, name):
            setattr(functional, name, getattr(typing, name))


def install_legacy_cache_api() -> None:
    """Give transformers 5's `DynamicCache` back the 4.x methods remote decoders call (idempotent)."""
    from transformers.cache_utils import DynamicCache

    if getattr(DynamicCache, "_classbench_legacy", False):
        return

    def from_legacy_cache(cls: type, past_key_values: Any = None) -> Any:
        cache = cls()
        for layer, (key, value) in enumerate(past_key_values or ()):
            cache.update(key, value, layer)
        return cache

    def to_legacy_cache(self: Any) -> tuple:
        return tuple((layer.keys, layer.values) for layer in self.layers if getattr(layer, "keys", None) is not None)

    def get_usable_length(self: Any, new_seq_length: int, layer_idx: int | None = 0) -> int:
        """A dynamic cache never drops tokens, so all of it is usable (the 4.x rule without a maximum)."""
        return self.get_seq_length(layer_idx or 0)

    DynamicCache.from_legacy_cache = classmethod(from_legacy_cache)  # type: ignore[attr-defined]
    DynamicCache.to_legacy_cache = to_legacy_cache  # type: ignore[attr-defined]
    DynamicCache.get_usable_length = get_usable_length  # type: ignore[attr-defined]
    DynamicCache.get_max_length = lambda self: None  # type: ignore[attr-defined]
    DynamicCache.seen_tokens = property(lambda self: self.get_seq_length())  # type: ignore[attr-defined]
    DynamicCache._classbench_legacy = True  # type: ignore[attr-defined]
