"""What an `openai:` run puts on the wire: each image's own file where it shows the decoded picture,
otherwise one lossless PNG, made once per image; the official client's headers; and a key that
never reaches the run folder even when a server echoes it back.

The server is `instant_server.InstantServer` (a scripted stand-in that answers at once, run in a
thread of the test), so the requests themselves can be read back.
"""

from __future__ import annotations

import base64
import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

pytest.importorskip("aiohttp")

from instant_server import MODEL, InstantServer  # noqa: E402

from classbench.images import load_image  # noqa: E402
from classbench.models import load_model  # noqa: E402
from classbench.models.base import GenerationRequest  # noqa: E402
from classbench.strategies.base import Context, Item  # noqa: E402
from classbench.strategies.binary import Binary, BinarySettings  # noqa: E402

KEY = "sk-test-3be1c0ffee5a11ad"


@pytest.fixture(scope="module")
def server() -> Iterator[InstantServer]:
    with InstantServer(keep_bodies=True) as running:
        yield running


def _photo(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _sent(server: InstantServer, images: list[Image.Image], **options: object) -> list[str]:
    """The image URL of each request that asking about `images` sent (in the order they were sent)."""
    backend = load_model(f"openai:{MODEL}", {"base_url": [server.url], **options})
    start = len(server.bodies)
    try:
        backend.generate([GenerationRequest(image, "What is it? Answer:") for image in images])
    finally:
        backend.close()
    return [orjson.loads(body)["messages"][0]["content"][0]["image_url"]["url"] for body in server.bodies[start:]]


def _decoded(url: str) -> Image.Image:
    header, data = url.split(",", 1)
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_a_jpeg_png_or_webp_is_sent_as_its_own_bytes(server: InstantServer, tmp_path: Path) -> None:
    files = {"photo.jpg": "image/jpeg", "photo.png": "image/png", "photo.webp": "image/webp"}
    for name in files:
        _photo().save(tmp_path / name, **({"quality": 80} if name.endswith(".jpg") else {}))
    Image.fromarray(np.full((12, 16), 90, dtype=np.uint8)).save(tmp_path / "grey.jpg")
    _photo().save(tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=[_photo(seed=1)])
    files.update({"grey.jpg": "image/jpeg", "camera.jpg": "image/jpeg"})
    for name, media_type in files.items():
        [url] = _sent(server, [load_image(tmp_path / name)])
        assert url == f"data:{media_type};base64," + base64.b64encode((tmp_path / name).read_bytes()).decode(), name


def test_files_that_need_converting_are_sent_as_one_lossless_encode(server: InstantServer, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    _photo((40, 20)).save(tmp_path / "rotated.jpg", exif=exif)
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(tmp_path / "alpha.png")
    Image.new("RGB", (30, 20), (1, 2, 3)).save(tmp_path / "old.bmp")
    for path in sorted(tmp_path.iterdir()):
        image = load_image(path)
        [url] = _sent(server, [image])
        sent = _decoded(url)
        assert sent.size == image.size and sent.convert("RGB").tobytes() == image.tobytes(), path.name


def test_max_pixels_resizes_even_a_jpeg(server: InstantServer, tmp_path: Path) -> None:
    _photo((400, 300)).save(tmp_path / "big.jpg")
    [url] = _sent(server, [load_image(tmp_path / "big.jpg")], max_pixels=30_000)
    width, height = _decoded(url).size
    assert width * height <= 30_000 and abs(width / height - 4 / 3) < 0.02


def test_binary_makes_each_image_payload_once(server: InstantServer, tmp_path: Path) -> None:
    """Binary asks an image in as many calls as classes; the server always says no, so all of them."""
    for index in range(3):
        Image.fromarray(np.asarray(_photo(seed=index))[..., :3]).convert("RGBA").save(tmp_path / f"{index}.png")
    items = [Item(f"{index}.png", "cat", load_image(tmp_path / f"{index}.png")) for index in range(3)]
    classes = ["bird", "car", "cat", "dog", "fish"]
    backend = load_model(f"openai:{MODEL}", {"base_url": [server.url], "concurrency": 4})
    start = len(server.bodies)
    try:
        strategy = Binary(backend, BinarySettings(), Context(classes=classes, batch_size=2))
        steps = list(strategy.run(items))
        made = backend.payloads.made
    finally:
        backend.close()
    assert [step.prediction for step in steps if step.final] == ["(none)"] * 3
    assert len(server.bodies) - start == 3 * len(classes) and made == 3
    urls = {orjson.loads(body)["messages"][0]["content"][0]["image_url"]["url"] for body in server.bodies[start:]}
    assert len(urls) == 3 and all(url.startswith("data:image/png;base64,") for url in urls)


def test_the_official_clients_headers_are_sent(server: InstantServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_test")
    start = len(server.heads)
    _sent(server, [_photo()])
    head = server.heads[start].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1")
    lines = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in head.split("\r\n")[1:]}
    assert lines["authorization"] == f"Bearer {KEY}" and lines["content-type"] == "application/json"
    assert lines["openai-organization"] == "org-test" and lines["openai-project"] == "proj_test"
    backend = load_model(f"openai:{MODEL}", {"base_url": [server.url]})
    try:
        assert KEY not in repr(backend) and KEY not in repr(backend.describe())
    finally:
        backend.close()


def test_a_key_echoed_by_the_server_never_reaches_the_store(tmp_path: Path) -> None:
    tree = tmp_path / "photos"
    for index, name in enumerate(("cat", "dog", "cat", "dog")):
        (tree / name).mkdir(parents=True, exist_ok=True)
        _photo(seed=index).save(tree / name / f"{index}.jpg")
    out = tmp_path / "run"
    with InstantServer(echo_key=True) as echoing:
        done = subprocess.run(
            [sys.executable, "-m", "classbench", "run", "--dataset", str(tree), "--model", f"openai:{MODEL}",
             "--strategy", "closed-set", "--base-url", echoing.url, "--out", str(out), "--no-progress"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "OPENAI_API_KEY": KEY})
    assert done.returncode == 0, done.stderr
    assert echoing.requests == 4 and KEY not in done.stdout + done.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    with sqlite3.connect(out / "run.sqlite") as db:
        stored = [answer for answer, in db.execute("SELECT answer FROM questions")]
    assert stored == ["cat (you sent Bearer [api key])"] * 4
