"""The image part of an API request: made once per image, never a lossy re-encoding.

A file that already shows the decoded picture in a format servers accept (`images.source_file`:
JPEG, PNG, WebP with no rotation, CMYK, 16-bit or alpha to undo) is sent as its own bytes; any
other image, or one that `--max-pixels` makes smaller, is encoded once as PNG (lossless). Binary
asks one image up to N−1 times over as many calls, and closed-set K times, so payloads are kept
per image object for as long as it lives, not per call.
"""

from __future__ import annotations

import asyncio
import base64
import io
import weakref

from PIL import Image

from classbench.images import SourceFile, source_file, within_pixels

IMAGE = "\x00image\x00"
"""Stands for the image in a request body until `api_http.encode_body` puts its JSON string there."""


def data_url(image: Image.Image, max_pixels: int | None = None) -> str:
    """The image as a base64 data URL: the source file's bytes where they show this very picture at
    a size within `max_pixels`; otherwise PNG, scaled down first when it has more than `max_pixels`."""
    source = _file_to_send(image, max_pixels)
    return _file_url(source) if source is not None else _png_url(image, max_pixels)


def _file_to_send(image: Image.Image, max_pixels: int | None) -> SourceFile | None:
    """The file to send as it is, or None when the image must be encoded (milliseconds: done off the event loop)."""
    if max_pixels is not None and image.size[0] * image.size[1] > max_pixels:
        return None
    return source_file(image)


def _file_url(source: SourceFile) -> str:
    return f"data:{source.media_type};base64,{base64.b64encode(source.data).decode('ascii')}"


def _png_url(image: Image.Image, max_pixels: int | None) -> str:
    buffer = io.BytesIO()
    within_pixels(image, max_pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _json_string(url: str) -> bytes:
    """A data URL as a JSON string: base64 and the media type need no escaping, only quotes."""
    return b'"' + url.encode("ascii") + b'"'


class Payloads:
    """Each image's data URL as a JSON string, made once per image object and dropped with it.

    Entries are futures so that the questions of one image asked in the same call wait for one
    encoding rather than start their own; `made` counts encodings and copies, for tests and benches.
    """

    def __init__(self, max_pixels: int | None) -> None:
        self.max_pixels = max_pixels
        self.made = 0
        self._urls: dict[int, asyncio.Future[bytes]] = {}

    def get(self, image: Image.Image) -> asyncio.Future[bytes]:
        key = id(image)
        url = self._urls.get(key)
        if url is None:
            url = self._make(image)
            self._urls[key] = url
            weakref.finalize(image, self._urls.pop, key, None)
        return url

    def _make(self, image: Image.Image) -> asyncio.Future[bytes]:
        self.made += 1
        source = _file_to_send(image, self.max_pixels)
        if source is None:
            return asyncio.ensure_future(asyncio.to_thread(lambda: _json_string(_png_url(image, self.max_pixels))))
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        done.set_result(_json_string(_file_url(source)))
        return done
