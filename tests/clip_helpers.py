"""Tiny CLIP/SigLIP folders and small image trees for the zero-shot and probe tests, built once per session."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from tinymodels.tiny_clip import build_tiny_clip, build_tiny_siglip

BUILDERS = {"clip": build_tiny_clip, "siglip": build_tiny_siglip}
CLASS_COLOURS = {"01.red-apple": (200, 30, 30), "02.green_leaf": (30, 180, 40), "03.blue sky": (40, 60, 210)}


@cache
def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="classbench-clip-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@cache
def tiny_model_folder(kind: str) -> Path:
    """A saved tiny model; cached, so every test in the session loads the same folder."""
    return BUILDERS[kind](_scratch() / kind)


def colour_tree(root: Path, per_class: int = 7) -> Path:
    """Class folders of noisy single-colour pictures in assorted sizes (the processors resize them)."""
    rng = np.random.default_rng(0)
    for folder, colour in CLASS_COLOURS.items():
        (root / folder).mkdir(parents=True)
        for index in range(per_class):
            size = (int(rng.integers(24, 64)), int(rng.integers(24, 64)))
            noise = rng.integers(-25, 25, size=(size[1], size[0], 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(root / folder / f"{index:03d}.png")
    return root
