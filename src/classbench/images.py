"""Decode any image file into the RGB picture a model should see.

Images are decoded once and handed over as PIL images, never re-encoded: resizing is the model
processor's job. The awkward cases are converted on purpose rather than by Pillow's defaults:
EXIF orientation is applied, alpha is composited on white (a transparent PNG otherwise turns
black), 16-bit and float images are scaled to 8 bits (Pillow's plain conversion clips them to
white), CMYK and palette images go through their proper conversions. Anything unreadable —
empty, truncated, corrupt, or a decompression bomb — raises `ImageLoadError` with the reason.
"""

from __future__ import annotations

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

DEFAULT_MAX_PIXELS = 89_478_485
"""Pillow's own bomb threshold (a 9459×9459 picture, about 270 MB decoded as RGB)."""
DEFAULT_MAX_ASPECT_RATIO = 200.0
"""Longer side over shorter side. Beyond it, resizing to a model's input makes one side vanish or
the other huge (a 1×40000 PNG made one processor allocate 7.8 GB; Qwen2-VL's refuses beyond 200)."""

_limits = {"pixels": DEFAULT_MAX_PIXELS, "aspect": DEFAULT_MAX_ASPECT_RATIO}


def set_limits(max_pixels: int | None = None, max_aspect_ratio: float | None = None) -> None:
    """Bound the memory one image may take: images beyond either limit are refused as unreadable
    (recorded once, never asked), before they are decoded. None keeps the default."""
    _limits["pixels"] = max_pixels or DEFAULT_MAX_PIXELS
    _limits["aspect"] = max_aspect_ratio or DEFAULT_MAX_ASPECT_RATIO
    Image.MAX_IMAGE_PIXELS = _limits["pixels"]


def check_size(width: int, height: int, where: str) -> None:
    """Refuse an image whose size alone would cost unbounded memory, naming the setting that allows it."""
    if width * height > _limits["pixels"]:
        raise ImageLoadError(f"{where}: {width}×{height} is {width * height:,} pixels, over the limit of "
                             f"{_limits['pixels']:,} (raise --max-image-pixels to allow it, in a new --out)")
    short, long = sorted((width, height))
    if short == 0 or long / short > _limits["aspect"]:
        raise ImageLoadError(f"{where}: {width}×{height} has an aspect ratio over {_limits['aspect']:g}:1, which "
                             "resizing cannot turn into a model input (raise --max-aspect-ratio to allow it, in a "
                             "new --out)")


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def load_image(path: str | Path) -> Image.Image:
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{path}: empty file (0 bytes)")
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: file not found") from None
    except (OSError, ValueError) as error:  # a name too long, a NUL byte, no permission: the path is unusable
        raise ImageLoadError(f"{str(path)!r}: cannot open ({getattr(error, 'strerror', None) or error})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_size(*image.size, str(path))
                image.load()
                return to_rgb(image)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(f"{path}: refused as a possible decompression bomb ({error}); raise "
                             "--max-image-pixels to allow larger images, in a new --out") from None
    except Exception as error:  # Pillow raises many types for corrupt data
        raise ImageLoadError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB copy of a decoded image, oriented as a person would see it."""
    check_size(*image.size, "image")
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
