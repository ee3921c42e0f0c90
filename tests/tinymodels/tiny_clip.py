"""Tiny, randomly initialised CLIP and SigLIP models with the real CLIP tokenizer, for offline tests.

No package ships CLIP or SigLIP weights, but `open-clip-torch` ships the real CLIP BPE merges.
The builders make the real architectures from small configs, save model and processor with
`save_pretrained`, and so test the same `AutoProcessor` / `AutoModel.from_pretrained(folder)`
path that `openai/clip-vit-base-patch32` takes. Random weights: plumbing only, never accuracy.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import cache
from pathlib import Path

IMAGE_SIZE = 32
VOCAB_SIZE = 49408
"""The CLIP vocabulary: 256 bytes, their end-of-word forms, 48,894 merges, two special tokens."""


@cache
def clip_vocabulary() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """Build CLIP's vocab and merges exactly as open_clip's SimpleTokenizer does, from its BPE file."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise RuntimeError("the CLIP vocabulary comes from open-clip-torch: pip install open-clip-torch==3.3.0")
    lines = gzip.open(Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz").read().decode("utf-8").split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1])
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table, which CLIP's BPE is written in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def clip_tokenizer(max_length: int):
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocabulary()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=max_length)


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers.utils import logging as hf_logging
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=8),
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=clip_tokenizer(77))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_siglip(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers.utils import logging as hf_logging
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config=dict(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, projection_size=32),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=8),
    )
    model = SiglipModel(config).eval()
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=clip_tokenizer(16))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


TINY_OPEN_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": VOCAB_SIZE, "width": 32, "heads": 2, "layers": 2},
}
"""A tiny open_clip CLIP (ViT image tower, transformer text tower) with the real CLIP tokenizer."""


def build_tiny_open_clip(folder: Path, seed: int = 0, safetensors: bool = True) -> Path:
    """Save a tiny random open_clip model as open_clip's `local-dir:` folder: open_clip_config.json
    (model_cfg + preprocess_cfg) and open_clip_pytorch_model.safetensors (or .bin)."""
    import json

    import torch
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(**TINY_OPEN_CLIP_CONFIG).eval()
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_OPEN_CLIP_CONFIG,
              "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}}
    (folder / "open_clip_config.json").write_text(json.dumps(config), encoding="utf-8")
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, str(folder / "open_clip_pytorch_model.safetensors"))
    else:
        torch.save(state, folder / "open_clip_pytorch_model.bin")
    return folder
