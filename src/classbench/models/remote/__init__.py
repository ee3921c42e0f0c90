"""Running 2024 remote code (`--trust-remote-code`) on transformers 5, and checking what it loaded.

Three families of the published benchmark ship their modeling code inside their hub repositories:
MiniCPM-V-2_6 (`minicpmv`), InternVL2 (`internvl_chat`) and Phi-3-vision (`phi3_v`). That code was
written for transformers 4.3x-4.4x and fails on 5.x loudly (removed modules and methods) and
silently (non-persistent buffers left uninitialised). This package fixes the first per family,
keyed by `config.model_type` (`FAMILIES`), never by the model's name, and checks the second for
every model whose class comes from remote code (`buffers`). The third-party files are never edited
or shipped: the fixes restore the APIs they call (`legacy`) or patch their classes once transformers
has imported them, so the remote modules keep their classes and buffer names.

Every failure seen on transformers 5.24.0 / torch 2.14.1 (shared/remote-code/SOURCES.md), and its fix:

- `transformers.modeling_attn_mask_utils` is gone (removed in 5.0; MiniCPM-V's SigLIP, Phi-3-vision):
  `legacy.install_mask_utils` restores the two helpers they import, with 4.x semantics.
- `NameError: List` in MiniCPM-V's resampler.py: it gets `List` from `from torch.nn.functional
  import *`, which recent torch no longer provides: `legacy.install_functional_typing_names`.
- `AttributeError: all_tied_weights_keys` (MiniCPM-V, InternVL2): since 5.0 that attribute is set in
  `post_init()`, which `MiniCPMV` and `InternVLChatModel` never call: `_calls_post_init`.
- Phi-3-vision's `DynamicCache.from_legacy_cache` / `get_usable_length` / `to_legacy_cache` /
  `seen_tokens` (deprecated in 4.4x, removed in 5.0): `legacy.install_legacy_cache_api`.
- InternLM2 has no `generate` (`PreTrainedModel` stopped inheriting `GenerationMixin` in 4.50) and
  its attention indexes `past_key_value[0]` where 5.x `generate` passes a `Cache` (`IndexError`):
  classbench does not call `generate` for these families; `decode.greedy` runs the model's forward
  and feeds back the cache it returns (tuples for InternLM2).
- MiniCPM-V's `chat(sampling=False)` is beam search (3 beams) with `repetition_penalty=1.2`:
  `decode.greedy` decodes every family with one beam and no penalty (recorded in the settings).
- Zeroed `resampler.pos_embed` (MiniCPM-V), garbage/NaN InternLM2 RoPE `inv_freq`/`cos_cached`/
  `sin_cached`: 5.x loads on the meta device and fills non-persistent buffers with `empty_like`;
  `buffers.verify` recomputes them from the model's own code or refuses the model.
- "does not support Flash Attention 2 yet" (Phi-3-vision's published config asks for it): 5.x reads
  `_supports_flash_attn` where 4.x code declares `_supports_flash_attn_2`: `_flash_attention_flag`;
  without `flash_attn` installed such a checkpoint loads with eager attention (`attention`).
- InternVL2 needs `einops` and `timm`, its tokenizer `sentencepiece`: in the `hf` extra; a missing
  package is one line naming it (`hf_adapters.load_checked`).
- A list-valued `_tied_weights_keys` (InternLM2: `'list' object has no attribute 'keys'`) was not
  reproduced on this path (InternVL2-2B does not tie its LLM's embeddings), so nothing patches it.

The shims are additive and process-wide once installed: new names only, nothing native replaced.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from classbench.models.remote import legacy


@dataclass(frozen=True)
class Family:
    """What one remote-code family needs: API shims installed before its code is imported, and
    patches applied to its model class once transformers has imported it."""

    model_type: str
    imports: tuple[Callable[[], None], ...] = ()
    patches: tuple[Callable[[type], None], ...] = ()


def _remote_classes(cls: type) -> Iterator[type]:
    """Every class defined in the modules of the checkpoint that defines `cls`."""
    package = cls.__module__.rsplit(".", 1)[0]
    for name, module in list(sys.modules.items()):
        if module is not None and name.startswith(package + "."):
            yield from (value for value in vars(module).values()
                        if isinstance(value, type) and value.__module__ == name)


def _flash_attention_flag(cls: type) -> None:
    """transformers 5 asks a model class for `_supports_flash_attn`; 4.x code declares
    `_supports_flash_attn_2`, so 5.x refuses flash attention for it ("does not support Flash
    Attention 2 yet"), though Phi-3-vision's published config asks for it. The new flag takes the
    value the class declares under the old name."""
    for klass in _remote_classes(cls):
        if "_supports_flash_attn_2" in vars(klass) and "_supports_flash_attn" not in vars(klass):
            klass._supports_flash_attn = klass._supports_flash_attn_2


def _calls_post_init(cls: type) -> None:
    """transformers 5 sets `all_tied_weights_keys` (and its other per-instance bookkeeping) in
    `post_init()`, which every 5.x model calls at the end of `__init__`; MiniCPM-V's `MiniCPMV` and
    InternVL2's `InternVLChatModel` never call it (4.x did not need it), so loading fails with
    `AttributeError: all_tied_weights_keys`. Their `__init__` now ends with that call."""
    if getattr(cls.__init__, "_classbench_post_init", False):
        return
    original = cls.__init__

    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        original(self, config, *args, **kwargs)
        if not hasattr(self, "all_tied_weights_keys"):
            self.post_init()

    __init__._classbench_post_init = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


FAMILIES: dict[str, Family] = {
    "minicpmv": Family(
        "minicpmv",
        imports=(legacy.install_mask_utils, legacy.install_functional_typing_names),
        patches=(_calls_post_init, _flash_attention_flag),
    ),
    "internvl_chat": Family("internvl_chat", patches=(_calls_post_init, _flash_attention_flag)),
    "phi3_v": Family("phi3_v", imports=(legacy.install_mask_utils, legacy.install_legacy_cache_api),
                     patches=(_flash_attention_flag,)),
}


def model_type_of(source: str, hub: dict[str, Any]) -> str | None:
    """The checkpoint's `model_type`, read from its config.json without running any of its code."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(source, **hub)
    return config.get("model_type")


def family_name(source: str, hub: dict[str, Any]) -> str | None:
    """`model_type_of` for error messages: None where even the config cannot be read."""
    try:
        return model_type_of(source, hub)
    except Exception:
        return None


def prepare(source: str, trust: bool, hub: dict[str, Any]) -> Family | None:
    """Before transformers imports a remote-code checkpoint's code: install the shims its family
    needs. Nothing happens without `--trust-remote-code` or for families that need no shim."""
    if not trust:
        return None
    family = FAMILIES.get(model_type_of(source, hub) or "")
    if family is not None:
        for install in family.imports:
            install()
    return family


def model_class(source: str, auto_name: str, hub: dict[str, Any]) -> type:
    """The checkpoint's own model class (from `config.auto_map[auto_name]`), with its family's patches."""
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    family = prepare(source, True, hub)
    config = AutoConfig.from_pretrained(source, trust_remote_code=True, **hub)
    reference = config.auto_map[auto_name]
    cls = get_class_from_dynamic_module(reference, source, **hub)
    for patch in family.patches if family else ():
        patch(cls)
    return cls


def attention(source: str, kwargs: dict[str, Any], hub: dict[str, Any]) -> dict[str, Any]:
    """`from_pretrained` arguments with eager attention where the checkpoint's config asks for
    flash_attention_2 (Phi-3-vision's does), the user chose none, and `flash_attn` is not installed:
    the published model then loads as its model card tells users to load it without flash attention,
    instead of failing. The choice is recorded in the run's settings (`attn_implementation`)."""
    if kwargs.get("attn_implementation") or importlib.util.find_spec("flash_attn") is not None:
        return kwargs
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(source, **hub)
    if config.get("_attn_implementation") == "flash_attention_2":
        return {**kwargs, "attn_implementation": "eager"}
    return kwargs
