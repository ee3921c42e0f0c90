"""Decode any image file into the RGB picture a model should see.

Images are decoded once and handed over as PIL images, never re-encoded: resizing is the model
processor's job. The awkward cases are converted on purpose rather than by Pillow's defaults:
EXIF orientation is applied, alpha is composited on white (a transparent PNG otherwise turns
black), 16-bit and float images are scaled to 8 bits (Pillow's plain conversion clips them to
white), CMYK and palette images go through their proper conversions. Anything unreadable —
empty, truncated, corrupt, or a decompression bomb — raises `ImageLoadError` with the reason.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from classbench.errors import ImageLoadError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)

# Truncated files must fail loudly, not decode to a half-grey picture.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def load_image(path: str | Path) -> Image.Image:
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{path}: empty file (0 bytes)")
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: file not found") from None
    return _decode(path, path)


def load_image_bytes(data: bytes | None, name: str | Path) -> Image.Image:
    """Decode a file's original bytes exactly as `load_image` decodes the file (`None`: there was no
    file), with the same errors, naming the file as `name`: how a worker that cannot see the dataset
    reads an image the driver sent it."""
    if data is None:
        raise ImageLoadError(f"{name}: file not found")
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    return _decode(io.BytesIO(data), name)


def _decode(source: Path | io.BytesIO, name: str | Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                image.load()
                return to_rgb(image)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(f"{name}: refused as a possible decompression bomb ({error})") from None
    except Exception as error:  # Pillow raises many types for corrupt data
        raise ImageLoadError(f"{name}: cannot decode image ({type(error).__name__}: {error})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB copy of a decoded image, oriented as a person would see it."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _scale_to_rgb(np.asarray(image), sixteen_bit=mode.startswith("I;16"))
    if mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _scale_to_rgb(array: np.ndarray, sixteen_bit: bool) -> Image.Image:
    values = array.astype(np.float64)
    if sixteen_bit:
        values = values / 257.0
    elif array.dtype.kind == "f":
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        values = (values - low) / (high - low or 1.0) * 255.0
    elif values.max(initial=0) > 255:
        values = values / 257.0
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")
