"""Vision-language models through transformers: `--model hf:<hub id or local folder>`.

One generic path serves every family whose processor has a chat template (Qwen2-VL, Qwen2.5-VL,
LLaVA-1.5, LLaVA-NeXT, Idefics3, SmolVLM, Llama-3.2-Vision): `AutoProcessor` +
`AutoModelForImageTextToText`, the model's own chat template, left padding, greedy decoding.
Families that differ (no chat template, remote code) are served by an adapter looked up by
`config.model_type` in `hf_adapters.ADAPTERS`, never by the model's name.

The settings and the loader live here and import nothing heavy until a model is loaded, so the
command line can show them at once; the backend itself is `hf_backend.HFVisionLanguageModel`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from classbench.errors import UserError
from classbench.settings import Settings, option_only, runtime

if TYPE_CHECKING:
    from classbench.models.hf_backend import HFVisionLanguageModel

DTYPES = ("auto", "bf16", "fp16", "fp32")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})(/|$)")


class HFSettings(Settings):
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(default="auto", description="weights' dtype")
    max_pixels: int | None = Field(default=None, ge=1, description="at most this many pixels per image (bounds "
                                                                   "Qwen's image tokens)")
    attn_implementation: str | None = Field(default=None, description="eager, sdpa, flash_attention_2 [default: "
                                                                      "the model's]")
    device_map: str | None = runtime(None, "transformers device_map, e.g. auto to spread a large model over GPUs")
    trust_remote_code: bool = runtime(False, "allow models that ship their own code (MiniCPM-V, InternVL2, "
                                             "Phi-3-vision)")
    min_pixels: int | None = option_only(None, "at least this many pixels per image (Qwen's processor)", ge=1)
    revision: str | None = option_only(None, "hub revision (branch, tag or commit) to load")


def load_hf(name: str, settings: HFSettings, device: str) -> HFVisionLanguageModel:
    """Load `name` (hub id or folder) with its processor, on `device`."""
    import torch
    from transformers import AutoConfig

    from classbench.models import remote
    from classbench.models.hf_adapters import ADAPTERS, GENERIC, code_error, load_checked
    from classbench.models.hf_backend import HFVisionLanguageModel
    from classbench.models.torch_utils import resolve_device

    options = settings.model_dump()
    local = Path(name).expanduser()
    source = str(local.resolve()) if local.is_dir() else name
    trust = bool(options.get("trust_remote_code", False))
    hub = {"revision": options["revision"]} if options.get("revision") else {}
    try:
        remote.prepare(source, trust, hub)
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust, **hub)
    except ValueError as error:
        if "trust_remote_code" in str(error):
            raise UserError(f"hf:{name} ships its own model code; run it with --trust-remote-code "
                            "if you trust that repository") from None
        raise UserError(f"hf:{name}: cannot read its config ({error})") from None
    except OSError as error:
        raise UserError(f"hf:{name}: not a local folder and not loadable from the hub ({error}). "
                        "Give a folder with config.json, or a hub id such as Qwen/Qwen2-VL-2B-Instruct.") from None
    except Exception as error:
        raise code_error(name, remote.family_name(source, hub), error, trust) from None
    adapter = ADAPTERS.get(config.model_type, GENERIC)
    dtypes = {"auto": "auto", "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    target = resolve_device(device)
    load_kwargs: dict[str, Any] = {"dtype": dtypes[settings.dtype], "trust_remote_code": trust, **hub}
    if options.get("attn_implementation"):
        load_kwargs["attn_implementation"] = options["attn_implementation"]
    device_map = options.get("device_map")
    if device_map:
        load_kwargs["device_map"] = device_map
    model, processor, checks = load_checked(adapter, name, config.model_type, source, load_kwargs)
    if not device_map:
        model.to(target)
    model.eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    if adapter.pixel_budget is not None and (options.get("min_pixels") or options.get("max_pixels")):
        adapter.pixel_budget(processor, options.get("min_pixels"), options.get("max_pixels"))
    if adapter.needs_chat_template and not _chat_template(processor):
        raise UserError(f"hf:{name} ({config.model_type}) has no chat template and no registered adapter; "
                        "add one to classbench.models.hf_adapters.ADAPTERS keyed by its model_type")
    first = next(model.parameters())
    described = {
        "device": str(first.device),
        "device_map": device_map,
        "dtype": str(first.dtype).removeprefix("torch."),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "model_type": config.model_type,
        "adapter": adapter.name,
        "max_pixels": options.get("max_pixels"),
        "image_processor": _image_settings(processor),
        "chat_template_sha256": _sha(_chat_template(processor)),
        **checks,
    }
    return HFVisionLanguageModel(
        model_id=f"hf:{name}",
        revision=_revision(model, local if local.is_dir() else None),
        settings=described,
        model=model,
        processor=processor,
        adapter=adapter,
        device=first.device,
        max_pixels=options.get("max_pixels"),
    )


def _chat_template(processor: Any) -> str | None:
    template = getattr(processor, "chat_template", None)
    if not template:
        template = getattr(getattr(processor, "tokenizer", None), "chat_template", None)
    return template if isinstance(template, str) else (json.dumps(template, sort_keys=True) if template else None)


def _image_settings(processor: Any) -> dict[str, Any]:
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None or not hasattr(image_processor, "to_dict"):
        return {}
    return json.loads(json.dumps(image_processor.to_dict(), default=str))


def _sha(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest()[:16] if text else None


def _revision(model: Any, folder: Path | None) -> str | None:
    """The hub commit when known (also for a folder inside the hub cache), else a hash of the weights."""
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return commit
    if folder is None:
        return None
    snapshot = _SNAPSHOT.search(str(folder.resolve()) + "/")
    if snapshot:
        return snapshot.group(1)
    digest = hashlib.sha256()
    from classbench.models.torch_utils import file_sha256

    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name.endswith(_WEIGHT_SUFFIXES):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(file_sha256(path).encode())
    return f"sha256:{digest.hexdigest()[:16]}"
