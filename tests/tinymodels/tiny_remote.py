"""Tiny random-weight models of the three remote-code families, built from their published code.

MiniCPM-V-2_6 (`minicpmv`), InternVL2 (`internvl_chat`) and Phi-3-vision (`phi3_v`) ship their
modeling code in their hub repositories. The code is kept, unchanged, in `shared/remote-code/`
beside the repository (never in it); a builder copies a family's .py files into a folder, writes a
config.json with `auto_map` at toy sizes, a tokenizer that works offline, and the processor files,
then instantiates the model class that code defines (through classbench's compatibility layer, as
a user's load would) and saves random weights. InternVL2 gets its own sentencepiece tokenizer
(tokenization_internlm2.py) over a tiny trained vocabulary; MiniCPM-V (whose own is a Qwen2 BPE)
and Phi-3-vision (a Llama sentencepiece one) get a byte-level BPE with their special tokens and
chat templates, MiniCPM-V's through its own tokenizer class.

One value differs from the published code: Phi-3-vision's image embedding builds a CLIP
ViT-L/14-336 tower from a module-level config constant (24 layers of width 1024, 300M
parameters); the width and the 24×24 grid are asserted, so the tiny model keeps them and
:func:`shrink_phi3_clip` lowers that constant's layer count to one in the loaded module.
It must run in the process that loads the model (tests run classbench in-process).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinymodels.tiny_models import Rig, _corpus, _Family, _train_tokenizer

FAMILIES: dict[str, str] = {
    "minicpmv": "minicpm-v-2_6",
    "internvl_chat": "internvl2-2b",
    "phi3_v": "phi-3-vision-128k-instruct",
}
"""model_type → folder of its published code under shared/remote-code/."""

PHI3_CLIP_LAYERS = 1


def remote_code_root() -> Path | None:
    """`shared/remote-code/` in the first folder above this repository that has one, else None."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "remote-code"
        if (candidate / "SOURCES.md").is_file():
            return candidate
    return None


def skip_reason() -> str | None:
    if remote_code_root() is None:
        return ("the published remote code of MiniCPM-V, InternVL2 and Phi-3-vision is not here "
                "(expected shared/remote-code/ beside the repository, see its SOURCES.md)")
    return None


_QWEN_CHAT = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_PHI3_CHAT = (
    "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}"
    "{{- '<|assistant|>\n' -}}{% endif %}"
)

_TOKENS: dict[str, _Family] = {
    "minicpmv": _Family(
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>", "<image>", "</image>", "<slice>",
                        "</slice>", "<image_id>", "</image_id>", "<ref>", "</ref>", "<box>", "</box>", "<quad>",
                        "</quad>", "<point>", "</point>"),
        pad="<|endoftext|>", eos="<|im_end|>", bos=None, add_bos=False, chat_template=_QWEN_CHAT),
    "phi3_v": _Family(
        special_tokens=("<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>",
                        "<|image|>"),
        pad="<|endoftext|>", eos="<|end|>", bos="<s>", add_bos=True, chat_template=_PHI3_CHAT),
}


def build_tiny_remote(model_type: str, folder: Path, *, words: Sequence[str] = (), rig: Rig | None = None,
                      seed: int = 0, overrides: dict[str, Any] | None = None,
                      phi3_clip_layers: int | None = PHI3_CLIP_LAYERS) -> Path:
    """Save a tiny random-weight `model_type` model, its code, tokenizer and processor into `folder`.

    `overrides` are merged into the saved config.json after the weights are built (a test uses one
    to give the model a config its own code computes non-finite buffers from). `phi3_clip_layers=None`
    keeps Phi-3-vision's CLIP tower as published (24 layers, 300M parameters): a folder that loads in
    any process, without :func:`shrink_phi3_clip`, at the cost of seconds per question on a CPU."""
    import torch

    root = remote_code_root()
    if root is None:
        raise FileNotFoundError(skip_reason())
    if rig is not None and rig.kind != "answer":
        raise NotImplementedError("remote-code models are rigged to always answer one text (Rig(answer=...))")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for source in (root / FAMILIES[model_type]).glob("*.py"):
        shutil.copyfile(source, folder / source.name)
    torch.manual_seed(seed)
    all_words = [w for phrase in words for w in str(phrase).split()] + (rig.words() if rig else [])
    tokenizer = _TOKENIZERS.get(model_type, _bpe_tokenizer)(model_type, folder, all_words)
    config = _BUILDERS[model_type](folder, tokenizer)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    model = _instantiate(folder, model_type, phi3_clip_layers)
    if rig is not None and rig.answer is not None:
        with torch.no_grad():
            _rig_answer(model, model_type, tokenizer, rig.answer)
    _save_weights(model, folder)
    published = {**_AS_PUBLISHED.get(model_type, {}), **(overrides or {})}
    if published:
        saved = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(_merge(saved, published), indent=1))
    return folder


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _auto_class(model_type: str) -> str:
    return "AutoModelForCausalLM" if model_type == "phi3_v" else "AutoModel"


def _instantiate(folder: Path, model_type: str, phi3_clip_layers: int | None) -> Any:
    """The model class of the copied code, patched by classbench's layer, built from the config."""
    from transformers import AutoConfig

    from classbench.models import remote

    cls = remote.model_class(str(folder), _auto_class(model_type), {})
    if model_type == "phi3_v" and phi3_clip_layers is not None:
        shrink_phi3_clip(cls, phi3_clip_layers)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    return cls(config).eval()


def shrink_phi3_clip(model_class: type, layers: int = PHI3_CLIP_LAYERS) -> None:
    """Lower the CLIP tower's layer count in the loaded Phi-3-vision code (see the module docstring)."""
    package = model_class.__module__.rsplit(".", 1)[0]
    embedding = sys.modules[f"{package}.image_embedding_phi3_v"]
    embedding.CLIP_VIT_LARGE_PATCH14_336_CONFIG.num_hidden_layers = layers


def _save_weights(model: Any, folder: Path) -> None:
    """Weights as safetensors, each shared tensor once (Phi-3-vision's embedding is also its image
    embedding's `wte`, which `save_pretrained` refuses); the config as the model's own code wrote it."""
    from safetensors.torch import save_file

    seen: dict[int, str] = {}
    tensors = {}
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen[tensor.data_ptr()] = name
        tensors[name] = tensor.detach().contiguous().clone()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config.setdefault("torch_dtype", "float32")
    (folder / "config.json").write_text(json.dumps(config, indent=1))


def _bpe_tokenizer(model_type: str, folder: Path, words: Sequence[str]) -> Any:
    """A byte-level BPE with the family's special tokens (saved by the family's builder)."""
    return _train_tokenizer(_TOKENS[model_type], words)


def _internlm2_tokenizer(model_type: str, folder: Path, words: Sequence[str]) -> Any:
    """InternVL2's own tokenizer (tokenization_internlm2.py, sentencepiece) over a tiny sentencepiece
    model trained here, with the published tokenizer_config (its special tokens appended after the
    tiny vocabulary instead of at their published ids 92538-92552)."""
    import io

    import sentencepiece
    from transformers import AutoTokenizer

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(words)), model_writer=model, vocab_size=400, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
        minloglevel=2)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    published = json.loads((remote_code_root() / FAMILIES[model_type] / "tokenizer_config.finetune.json").read_text())
    published.pop("added_tokens_decoder")
    (folder / "tokenizer_config.json").write_text(json.dumps(published, indent=1))
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=True)


def _save_tokenizer(tokenizer: Any, folder: Path, **config: Any) -> None:
    tokenizer.save_pretrained(folder)
    path = folder / "tokenizer_config.json"
    saved = json.loads(path.read_text())
    saved.update(config)
    path.write_text(json.dumps(saved, indent=1))


def _minicpmv(folder: Path, tokenizer: Any) -> dict[str, Any]:
    """MiniCPM-V-2_6 at toy sizes: Qwen2 text of width 128 (the resampler has width/128 heads),
    a one-layer SigLIP (NaViT) of width 32, 4 resampler queries, one 28-pixel slice per image."""
    _save_tokenizer(tokenizer, folder, tokenizer_class="MiniCPMVTokenizerFast",
                    auto_map={"AutoTokenizer": [None, "tokenization_minicpmv_fast.MiniCPMVTokenizerFast"]})
    ids = tokenizer.convert_tokens_to_ids
    image = {"image_feature_size": 4, "patch_size": 14, "max_slice_nums": 1, "scale_resolution": 28,
             "use_image_id": True, "slice_mode": True, "norm_mean": [0.5, 0.5, 0.5], "norm_std": [0.5, 0.5, 0.5],
             "version": 2.6, "im_start": "<image>", "im_end": "</image>", "slice_start": "<slice>",
             "slice_end": "</slice>", "unk": "<unk>", "im_id_start": "<image_id>", "im_id_end": "</image_id>",
             "image_processor_type": "MiniCPMVImageProcessor", "processor_class": "MiniCPMVProcessor",
             "auto_map": {"AutoProcessor": "processing_minicpmv.MiniCPMVProcessor",
                          "AutoImageProcessor": "image_processing_minicpmv.MiniCPMVImageProcessor"}}
    (folder / "preprocessor_config.json").write_text(json.dumps(image, indent=1))
    return {
        "architectures": ["MiniCPMV"], "model_type": "minicpmv", "version": 2.6,
        "auto_map": {"AutoConfig": "configuration_minicpm.MiniCPMVConfig", "AutoModel": "modeling_minicpmv.MiniCPMV",
                     "AutoModelForCausalLM": "modeling_minicpmv.MiniCPMV"},
        "vocab_size": len(tokenizer), "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512, "rope_theta": 1e6,
        "bos_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"), "pad_token_id": ids("<|endoftext|>"),
        "tie_word_embeddings": False, "use_cache": True, "query_num": 4, "image_size": 28, "patch_size": 14,
        "drop_vision_last_layer": False, "batch_vision_input": True, "use_image_id": True,
        "slice_config": {"patch_size": 14, "max_slice_nums": 1, "scale_resolution": 28, "model_type": "minicpmv"},
        "vision_config": {"hidden_size": 32, "image_size": 28, "intermediate_size": 64, "model_type": "siglip",
                          "num_attention_heads": 2, "num_hidden_layers": 1, "patch_size": 14},
    }


def _internvl(folder: Path, tokenizer: Any) -> dict[str, Any]:
    """InternVL2 at toy sizes: InternViT (one layer, width 32, 56-pixel tiles → 4 image tokens) and
    InternLM2 (two layers, width 64) with the published dynamic-NTK RoPE and chat template."""
    ids = tokenizer.convert_tokens_to_ids
    return {
        "architectures": ["InternVLChatModel"], "model_type": "internvl_chat",
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                     "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
        "downsample_ratio": 0.5, "dynamic_image_size": False, "force_image_size": 56, "max_dynamic_patch": 1,
        "min_dynamic_patch": 1, "ps_version": "v2", "select_layer": -1, "template": "internlm2-chat",
        "use_backbone_lora": 0, "use_llm_lora": 0, "use_thumbnail": False,
        "llm_config": {
            "architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2", "attn_implementation": "eager",
            "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                         "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                         "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
            "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512, "bias": False,
            "rope_scaling": {"factor": 2.0, "type": "dynamic"}, "rope_theta": 1000000, "rms_norm_eps": 1e-5,
            "bos_token_id": ids("<s>"), "eos_token_id": ids("</s>"), "pad_token_id": ids("</s>"),
            "tie_word_embeddings": False, "use_cache": True,
        },
        "vision_config": {
            "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "hidden_size": 32,
            "image_size": 56, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1,
            "patch_size": 14, "norm_type": "layer_norm", "qk_normalization": False, "qkv_bias": True,
            "use_flash_attn": False, "drop_path_rate": 0.0, "hidden_act": "gelu", "layer_norm_eps": 1e-6,
        },
    }


def _phi3v(folder: Path, tokenizer: Any) -> dict[str, Any]:
    """Phi-3-vision at toy sizes: the asserted CLIP ViT-L/14-336 width (1024) with one layer, one
    336-pixel crop per image, and a two-layer Phi-3 of width 64 with the published su-scaled RoPE."""
    _save_tokenizer(tokenizer, folder, tokenizer_class="PreTrainedTokenizerFast")
    image = {"num_crops": 1, "num_img_tokens": 144, "image_processor_type": "Phi3VImageProcessor",
             "processor_class": "Phi3VProcessor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
             "image_std": [0.26862954, 0.26130258, 0.27577711],
             "auto_map": {"AutoProcessor": "processing_phi3_v.Phi3VProcessor",
                          "AutoImageProcessor": "image_processing_phi3_v.Phi3VImageProcessor"}}
    (folder / "preprocessor_config.json").write_text(json.dumps(image, indent=1))
    ids = tokenizer.convert_tokens_to_ids
    head_dim = 16
    return {
        "architectures": ["Phi3VForCausalLM"], "model_type": "phi3_v",
        "auto_map": {"AutoConfig": "configuration_phi3_v.Phi3VConfig",
                     "AutoModelForCausalLM": "modeling_phi3_v.Phi3VForCausalLM"},
        "embd_layer": {"embedding_cls": "image", "hd_transform_order": "sub_glb", "projection_cls": "mlp",
                       "use_hd_transform": True, "with_learnable_separator": True},
        "img_processor": {"image_dim_out": 1024, "model_name": "openai/clip-vit-large-patch14-336",
                          "name": "clip_vision_model", "num_img_tokens": 144},
        "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 64 // head_dim, "num_key_value_heads": 64 // head_dim, "hidden_act": "silu",
        "max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "rope_scaling": {"type": "su", "short_factor": [1.0 + i / 10 for i in range(head_dim // 2)],
                         "long_factor": [1.0 + i for i in range(head_dim // 2)]},
        "rope_theta": 10000.0, "sliding_window": 131072, "attention_dropout": 0.0, "embd_pdrop": 0.0,
        "resid_pdrop": 0.0, "bos_token_id": ids("<s>"), "eos_token_id": ids("<|endoftext|>"),
        "pad_token_id": ids("<|endoftext|>"), "tie_word_embeddings": False, "use_cache": True,
        "_attn_implementation": "eager",
    }


_BUILDERS = {"minicpmv": _minicpmv, "internvl_chat": _internvl, "phi3_v": _phi3v}
_TOKENIZERS = {"internvl_chat": _internlm2_tokenizer}
_AS_PUBLISHED: dict[str, dict[str, Any]] = {"phi3_v": {"_attn_implementation": "flash_attention_2"}}
"""Config values of the published checkpoint that cannot be used while building on this machine:
Phi-3-vision's config asks for flash attention (classbench loads it with eager attention when
`flash_attn` is not installed)."""
_END_OF_TURN = {"minicpmv": "<|im_end|>", "internvl_chat": "<|im_end|>", "phi3_v": "<|end|>"}


def _rig_parts(model: Any, model_type: str) -> tuple[Any, Any, Any, list[Any], list[tuple[Any, str]]]:
    """(input embedding, lm_head, final norm, decoder layers' output projections, image-feature
    writers (module, 'rows' of a Linear or 'columns' of a matrix parameter)) of one family."""
    if model_type == "minicpmv":
        llm = model.llm
        outs = [p for layer in llm.model.layers for p in (layer.self_attn.o_proj, layer.mlp.down_proj)]
        return llm.model.embed_tokens, llm.lm_head, llm.model.norm, outs, [(model.resampler, "proj")]
    if model_type == "internvl_chat":
        llm = model.language_model
        outs = [p for layer in llm.model.layers for p in (layer.attention.wo, layer.feed_forward.w2)]
        return llm.model.tok_embeddings, llm.output, llm.model.norm, outs, [(model.mlp1[3], "weight")]
    outs = [p for layer in model.model.layers for p in (layer.self_attn.o_proj, layer.mlp.down_proj)]
    writer = model.model.vision_embed_tokens.img_projection[-1]
    return model.model.embed_tokens, model.lm_head, model.model.norm, outs, [(writer, "weight")]


def _rig_answer(model: Any, model_type: str, tokenizer: Any, answer: str) -> None:
    """Make the real forward pass always answer `answer`, then the end of turn (see
    `tiny_models._apply_rig`, the same construction without a trigger): every layer's output
    projections are zeroed, so each position's residual is its own embedding; image features are
    zeroed on the rig's dimensions; the final norm keeps only CONST and one STATE dimension per answer
    token, and lm_head maps them to the next answer token."""
    import torch

    embed, head, norm, outs, writers = _rig_parts(model, model_type)
    eos = tokenizer.convert_tokens_to_ids(_END_OF_TURN[model_type])
    tokens = tokenizer.encode(answer, add_special_tokens=False)
    const = 0
    state = {token: 1 + i for i, token in enumerate(tokens)}
    dims = [const, *state.values()]
    embed.weight[:, dims] = 0.0
    embed.weight[:, const] = 1.0
    for token, dim in state.items():
        embed.weight[token, dim] = 1.0
    for module, name in writers:
        if name == "proj":
            module.proj[:, dims] = 0.0
        else:
            module.weight[dims, :] = 0.0
            if module.bias is not None:
                module.bias[dims] = 0.0
    for proj in outs:
        proj.weight.zero_()
        if proj.bias is not None:
            proj.bias.zero_()
    gains = torch.zeros(norm.weight.shape[0])
    gains[dims] = 1.0
    norm.weight.copy_(gains)
    head.weight.zero_()
    head.weight[tokens[0], const] = 1.0
    for token, following in zip(tokens, [*tokens[1:], eos]):
        head.weight[following, state[token]] += 1e5
        head.weight[tokens[0], state[token]] -= 1e5
    if getattr(head, "bias", None) is not None:
        head.bias.zero_()

