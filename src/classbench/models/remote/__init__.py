"""Running 2024 remote code (`--trust-remote-code`) on transformers 5, and checking what it loaded.

Three families of the published benchmark ship their modeling code inside their hub repositories:
MiniCPM-V-2_6 (`minicpmv`), InternVL2 (`internvl_chat`) and Phi-3-vision (`phi3_v`). That code was
written for transformers 4.4x and fails on 5.x in two ways: loudly (removed modules and methods)
and silently (non-persistent buffers left uninitialised, see `buffers`). This package fixes the
first per family, keyed by `config.model_type` (`FAMILIES`), never by the model's name, and checks
the second for every remote-code model. The third-party files are never edited or shipped: the
fixes restore APIs they call (`legacy`) or patch values on their classes after transformers
imports them (`patch_class`), so the remote modules keep their classes and buffer names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from classbench.models.remote import legacy


@dataclass(frozen=True)
class Family:
    """What one remote-code family needs: API shims installed before its code is imported, and
    patches applied to its model class once transformers has imported it."""

    model_type: str
    imports: tuple[Callable[[], None], ...] = ()
    patches: tuple[Callable[[type], None], ...] = field(default_factory=tuple)


def _calls_post_init(cls: type) -> None:
    """transformers 5 sets `all_tied_weights_keys` (and its other per-instance bookkeeping) in
    `post_init()`, which every 5.x model calls at the end of `__init__`; MiniCPM-V's `MiniCPMV` never
    calls it (4.x did not need it), so loading fails with `AttributeError: all_tied_weights_keys`."""
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
        patches=(_calls_post_init,),
    ),
    "internvl_chat": Family("internvl_chat", patches=(_calls_post_init,)),
    "phi3_v": Family("phi3_v", imports=(legacy.install_mask_utils, legacy.install_legacy_cache_api)),
}


def model_type_of(source: str, hub: dict[str, Any]) -> str | None:
    """The checkpoint's `model_type`, read from its config.json without running any of its code."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(source, **hub)
    return config.get("model_type")


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
