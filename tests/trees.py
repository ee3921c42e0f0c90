"""Builders of small Caltech-style folder trees, with every kind of broken file a real dataset has."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_FOLDERS = ("001.ak47", "002.american-flag", "003.backpack", "004.baseball-bat", "253.faces-easy-101",
                 "005.binoculars", "006.birdbath")
BACKGROUND_FOLDER = "257.clutter"


def photo(seed: int, size: tuple[int, int] = (40, 32)) -> Image.Image:
    """A small, distinct, deterministic RGB picture."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    noise = rng.integers(0, 60, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def make_tree(root: Path, folders: tuple[str, ...] = CLASS_FOLDERS, per_class: int = 6,
              background: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    seed = 0
    for folder in (*folders, *([BACKGROUND_FOLDER] if background else [])):
        (root / folder).mkdir()
        for index in range(per_class):
            seed += 1
            photo(seed).save(root / folder / f"{index:04d}.jpg", quality=90)
    return root


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A tiny PNG that claims to be 1.6 gigapixels: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def broken_files() -> dict[str, bytes]:
    """Files with image names that cannot be decoded, by the reason they fail."""
    good = io.BytesIO()
    photo(999).save(good, "PNG")
    png = good.getvalue()
    jpeg = io.BytesIO()
    photo(998, (64, 64)).save(jpeg, "JPEG")
    data = jpeg.getvalue()
    corrupt = data[:200] + bytes(range(256)) * 4 + data[1224:]
    return {
        "zero.jpg": b"",
        "truncated.png": png[: len(png) // 2],
        "corrupt.jpg": corrupt[:600],
        "garbage.jpg": b"this is not an image at all" * 10,
        "bomb.png": bomb_png(),
    }


def add_broken(folder: Path) -> list[str]:
    names = []
    for name, content in broken_files().items():
        (folder / name).write_bytes(content)
        names.append(name)
    return names
