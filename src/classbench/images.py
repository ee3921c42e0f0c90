"""Decode any image file into the RGB picture a model should see.

Images are decoded once and handed over as PIL images, never re-encoded: resizing is the model
processor's job. The awkward cases are converted on purpose rather than by Pillow's defaults:
EXIF orientation is applied, alpha is composited on white (a transparent PNG otherwise turns
black), 16-bit and float images are scaled to 8 bits (Pillow's plain conversion clips them to
white), CMYK and palette images go through their proper conversions. Anything unreadable —
empty, truncated, corrupt, or a decompression bomb — raises `ImageLoadError` with the reason.

A backend that must send the picture somewhere (an API) should send the file itself rather than a
re-encoding, when the file shows exactly the decoded picture: `source_file(image)` gives its
bytes for a JPEG, PNG or WebP that needed none of the conversions above (greyscale aside, which
every decoder widens to RGB the same way), and None otherwise.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
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


SENDABLE = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
"""Formats every vision API accepts, by Pillow's name, with their media type. MPO is a camera's
JPEG with extra pictures appended: every decoder, Pillow's included, shows its first."""
_SOURCE = "_classbench_source"
ORIENTATION = 0x0112


@dataclass(frozen=True)
class SourceFile:
    """The bytes of the file an image was decoded from, which show the very same picture."""

    data: bytes
    media_type: str


def source_file(image: Image.Image) -> SourceFile | None:
    """The file behind a decoded image, when sending it is the same as sending the pixels.

    It is kept on the image object itself: Pillow copies `info` into every derived image (a resize,
    a crop) but not attributes, so an image made from this one never claims this file."""
    return getattr(image, _SOURCE, None)


def _unconverted(image: Image.Image) -> bool:
    """Whether the decoded file is already the picture `to_rgb` gives, bar greyscale → RGB."""
    return (image.format in SENDABLE and image.mode in ("RGB", "L") and "transparency" not in image.info
            and (getattr(image, "n_frames", 1) == 1 or image.format == "MPO")
            and image.getexif().get(ORIENTATION, 1) == 1)


def within_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """The image scaled down, keeping its aspect ratio, to at most `max_pixels` (a user's `--max-pixels`);
    itself when it is within the limit or there is none. The one resize classbench makes for a model."""
    width, height = image.size
    if max_pixels is None or width * height <= max_pixels:
        return image
    scale = (max_pixels / (width * height)) ** 0.5
    return image.resize((max(1, int(width * scale)), max(1, int(height * scale))), Image.Resampling.BICUBIC)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def load_image(path: str | Path) -> Image.Image:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: file not found") from None
    except (OSError, ValueError) as error:  # a long name, a NUL byte, a folder, no permission: the path is unusable
        raise ImageLoadError(f"{str(path)!r}: cannot open ({getattr(error, 'strerror', None) or error})") from None
    return load_image_bytes(data, path)


def load_image_bytes(data: bytes | None, name: str | Path) -> Image.Image:
    """Decode a file's original bytes exactly as `load_image` decodes the file (`None`: there was no
    file), with the same errors, naming the file as `name`: how a worker that cannot see the dataset
    reads an image the driver sent it."""
    if data is None:
        raise ImageLoadError(f"{name}: file not found")
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    return _decode(data, name)


def _decode(data: bytes, name: str | Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                check_size(*image.size, str(name))
                image.load()
                picture = to_rgb(image)
                if _unconverted(image):
                    setattr(picture, _SOURCE, SourceFile(data, SENDABLE[image.format]))
                return picture
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(f"{name}: refused as a possible decompression bomb ({error}); raise "
                             "--max-image-pixels to allow larger images, in a new --out") from None
    except Exception as error:  # Pillow raises many types for corrupt data
        raise ImageLoadError(f"{name}: cannot decode image ({type(error).__name__}: {error})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB copy of a decoded image, oriented as a person would see it."""
    check_size(*image.size, "image")
    image = ImageOps.exif_transpose(image)  # a new image, rotated or not
    mode = image.mode
    if mode == "RGB":
        return image
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
