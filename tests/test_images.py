"""Every awkward image kind decodes to the RGB picture a person would see, or fails with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classbench.errors import ImageLoadError
from classbench.images import load_image
from trees import broken_files


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    red, green, blue = image.getpixel((8, 8))
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    values = np.full((8, 8), 32768, dtype=np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    image = load_image(path)
    assert image.mode == "RGB"
    assert abs(image.getpixel((0, 0))[0] - 128) <= 1


def test_palette_with_transparency_composites_on_white(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    image.info["transparency"] = 0
    image.save(path, transparency=0)
    assert load_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_alpha_composites_on_white_not_black(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(path)
    assert load_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.new("RGB", (40, 20), (0, 128, 0)).save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_greyscale_becomes_three_channels(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("L", (5, 5), 77).save(path)
    assert load_image(path).getpixel((2, 2)) == (77, 77, 77)


@pytest.mark.parametrize("name", sorted(broken_files()))
def test_broken_files_fail_with_a_reason(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(broken_files()[name])
    with pytest.raises(ImageLoadError) as raised:
        load_image(path)
    assert name in str(raised.value)
    if name == "bomb.png":
        assert "decompression bomb" in str(raised.value)
    if name == "zero.jpg":
        assert "empty" in str(raised.value)


def test_missing_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_a_path_that_cannot_be_read_is_a_load_error(tmp_path: Path) -> None:
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    with pytest.raises(ImageLoadError, match="folder.jpg.*cannot open"):
        load_image(folder)


def test_decoding_keeps_pixels_exact(tmp_path: Path) -> None:
    """PNG is lossless: what the model gets is exactly what is in the file."""
    path = tmp_path / "exact.png"
    pixels = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    assert np.array_equal(np.asarray(load_image(path)), pixels)
