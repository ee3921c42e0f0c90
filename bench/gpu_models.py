"""Full-size VLMs from their published configs, random weights, built offline (for bench/gpu.py).

Each model's config.json values are written here (nested as transformers 5.x saves them), with
the published image-processor settings, so no download is needed. The tokenizer is a tiny BPE
trained in milliseconds with the family's special tokens (`tests/tinymodels`): token ids only need
to be valid, and the sequence lengths that decide speed come mostly from the image tokens, which
the real processor classes count with the published settings. Ids the random model generates
beyond the tiny vocabulary decode to nothing, which changes no timing.

`--smoke` swaps in tiny sizes (`ModelSpec.tiny`, merged over the published values) and keeps
everything else, so the CPU check runs the very code path the GPU run takes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ANSWER_TOKENS = 3
"""New tokens per answer: a real run's answer length (a class name or yes/no, then the end)."""
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2)


@dataclass(frozen=True)
class ModelSpec:
    hub_id: str
    family: str
    """Which tokenizer family and processor builder (`_FAMILIES`, `_PROCESSORS`)."""
    config: dict[str, Any]
    """The published config.json, nested; token ids are filled from the tokenizer."""
    image: dict[str, Any]
    """The published image-processor settings."""
    tiny: dict[str, Any] = field(default_factory=dict)
    tiny_image: dict[str, Any] = field(default_factory=dict)
    published_images_per_s: float | None = None


QWEN2_VL_7B = ModelSpec(
    hub_id="Qwen/Qwen2-VL-7B-Instruct",
    family="qwen2_vl",
    config=dict(
        model_type="qwen2_vl", tie_word_embeddings=False,
        text_config=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, hidden_act="silu",
                         max_position_embeddings=32768, rms_norm_eps=1e-6, use_sliding_window=False,
                         sliding_window=32768, max_window_layers=28, tie_word_embeddings=False,
                         rope_parameters=dict(rope_type="default", rope_theta=1000000.0, mrope_section=[16, 24, 24])),
        vision_config=dict(depth=32, embed_dim=1280, hidden_size=3584, hidden_act="quick_gelu", mlp_ratio=4,
                           num_heads=16, in_chans=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
    ),
    image=dict(min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2, merge_size=2,
               image_mean=CLIP_MEAN, image_std=CLIP_STD),
    tiny=dict(text_config=dict(**TINY_TEXT, rope_parameters=dict(rope_type="default", rope_theta=1000000.0,
                                                                  mrope_section=[2, 3, 3])),
              vision_config=dict(depth=1, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2)),
    published_images_per_s=3.5,
)

LLAVA_NEXT_7B = ModelSpec(
    hub_id="llava-hf/llava-v1.6-mistral-7b-hf",
    family="llava_next",
    config=dict(
        model_type="llava_next", tie_word_embeddings=False, projector_hidden_act="gelu", vision_feature_layer=-2,
        vision_feature_select_strategy="default", use_image_newline_parameter=True,
        image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
        text_config=dict(model_type="mistral", vocab_size=32064, hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                         max_position_embeddings=32768, rms_norm_eps=1e-5, sliding_window=None,
                         tie_word_embeddings=False, rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        vision_config=dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096,
                           num_hidden_layers=24, num_attention_heads=16, image_size=336, patch_size=14,
                           projection_dim=768, hidden_act="quick_gelu"),
    ),
    image=dict(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, do_pad=True,
               image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
               image_mean=CLIP_MEAN, image_std=CLIP_STD),
    tiny=dict(image_grid_pinpoints=[[28, 56], [56, 28], [56, 56]], text_config=TINY_TEXT,
              vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=28, projection_dim=32)),
    tiny_image=dict(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                    image_grid_pinpoints=[[28, 56], [56, 28], [56, 56]]),
)

LLAMA_32_11B_VISION = ModelSpec(
    hub_id="meta-llama/Llama-3.2-11B-Vision-Instruct",
    family="mllama",
    config=dict(
        model_type="mllama", tie_word_embeddings=False,
        text_config=dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=40,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                         rms_norm_eps=1e-5, cross_attention_layers=[3, 8, 13, 18, 23, 28, 33, 38],
                         tie_word_embeddings=False,
                         rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                                              high_freq_factor=4.0, original_max_position_embeddings=8192)),
        vision_config=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_global_layers=8,
                           attention_heads=16, image_size=560, patch_size=14, max_num_tiles=4, norm_eps=1e-5,
                           intermediate_layers_indices=[3, 7, 15, 23, 30], vision_output_dim=7680,
                           supported_aspect_ratios=[[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]),
    ),
    image=dict(size={"height": 560, "width": 560}, max_image_tiles=4, do_pad=True, image_mean=CLIP_MEAN,
               image_std=CLIP_STD),
    tiny=dict(text_config={**TINY_TEXT, "num_hidden_layers": 3, "cross_attention_layers": [1]},
              vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                                 attention_heads=2, image_size=28, intermediate_layers_indices=[0, 1],
                                 vision_output_dim=96)),
    tiny_image=dict(size={"height": 28, "width": 28}),
    published_images_per_s=1.2,
)

MODELS: dict[str, ModelSpec] = {"qwen2-vl-7b": QWEN2_VL_7B, "llava-next-7b": LLAVA_NEXT_7B,
                                "llama-3.2-11b-vision": LLAMA_32_11B_VISION}


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied, nested dicts merged key by key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _mllama_family() -> Any:
    from tinymodels.tiny_models import _chat_template, _Family

    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    return _Family(
        special_tokens=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                        "<|eot_id|>", "<|image|>", "<|python_tag|>", "<|finetune_right_pad_id|>"),
        pad="<|finetune_right_pad_id|>", eos="<|eot_id|>", bos="<|begin_of_text|>", add_bos=False,
        chat_template=_chat_template(start="<|begin_of_text|>",
                                     roles={role: header.format(role) for role in ("system", "user", "assistant")},
                                     end="<|eot_id|>", image="<|image|>", generation=header.format("assistant")))


def tokenizer_for(family: str, words: Sequence[str]) -> tuple[Any, Any]:
    """A tiny trained BPE with the family's special tokens, and the family's conventions."""
    from tinymodels.tiny_models import _LLAVA, _QWEN, _train_tokenizer

    conventions = {"qwen2_vl": _QWEN, "llava_next": _LLAVA}.get(family) or _mllama_family()
    return _train_tokenizer(conventions, words), conventions


def _token_ids(family: str, tokenizer: Any) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    if family == "qwen2_vl":
        return dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                    vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    if family == "llava_next":
        return dict(image_token_index=ids("<image>"))
    return dict(image_token_index=ids("<|image|>"))


def _processor(family: str, settings: dict[str, Any], tokenizer: Any) -> Any:
    import transformers as tf

    template = tokenizer.chat_template
    if family == "qwen2_vl":
        size = {"shortest_edge": settings["min_pixels"], "longest_edge": settings["max_pixels"]}
        return tf.Qwen2VLProcessor(image_processor=tf.Qwen2VLImageProcessor(size=size, **settings),
                                   video_processor=tf.Qwen2VLVideoProcessor(size=size, **settings),
                                   tokenizer=tokenizer, chat_template=template)
    if family == "llava_next":
        return tf.LlavaNextProcessor(image_processor=tf.LlavaNextImageProcessor(**settings), tokenizer=tokenizer,
                                     chat_template=template, patch_size=14, vision_feature_select_strategy="default",
                                     num_additional_image_tokens=1)
    return tf.MllamaProcessor(image_processor=tf.MllamaImageProcessor(**settings), tokenizer=tokenizer,
                              chat_template=template)


def build(spec: ModelSpec, smoke: bool, device: str, dtype: Any, words: Sequence[str]) -> tuple[Any, Any]:
    """The model (random weights, created on `device`) and its processor. Weights are initialised as
    transformers initialises them (normal, std 0.02: a second on a GPU), not left as empty memory,
    so the numbers the batch-invariance check compares are finite and spread like a model's."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    tokenizer, conventions = tokenizer_for(spec.family, [w for name in words for w in name.split()])
    ids = tokenizer.convert_tokens_to_ids
    values = merged(spec.config, spec.tiny) if smoke else copy.deepcopy(spec.config)
    special = dict(pad_token_id=ids(conventions.pad), eos_token_id=ids(conventions.eos),
                   bos_token_id=ids(conventions.bos) if conventions.bos else None)
    values["text_config"].update(special)
    config = AutoConfig.for_model(values.pop("model_type"), **values, **_token_ids(spec.family, tokenizer))
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    generation = model.generation_config
    generation.pad_token_id, generation.eos_token_id = special["pad_token_id"], special["eos_token_id"]
    generation.bos_token_id = special["bos_token_id"]
    generation.min_new_tokens = ANSWER_TOKENS  # random weights never stop: every answer is exactly this long
    settings = merged(spec.image, spec.tiny_image) if smoke else spec.image
    return model, _processor(spec.family, settings, tokenizer)
