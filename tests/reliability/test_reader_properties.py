"""Property tests: random bytes and random manifests fed to the dataset readers (#13).

Every outcome must be a dataset whose images each load or fail with `ImageLoadError` (a recorded
failure), or a one-line `UserError`: never another exception, never a hang (hypothesis' deadline).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from classbench.datasets import open_dataset
from classbench.errors import ImageLoadError, UserError

SETTINGS = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])

_tiny_png = io.BytesIO()
Image.new("RGB", (4, 3), (200, 10, 10)).save(_tiny_png, "PNG")
TINY_PNG = _tiny_png.getvalue()

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
paths = st.one_of(st.sampled_from(["a.png", "b.png", "sub/c.png", "sub/../a.png", "/abs.png", "..", "", " ",
                                   "missing.png", "junk.png", "nul\0.png", "a" * 300 + ".png", "sub"]), texts)
labels = st.one_of(st.sampled_from(["cat", "dog", "Cat", " cat ", "a\u2028b", "x\x0cy", "1"]), texts)
values = st.one_of(texts, st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
                   st.dictionaries(texts, st.integers(), max_size=2))


def _folder() -> Path:
    root = Path(tempfile.mkdtemp(prefix="reader-"))
    (root / "sub").mkdir()
    for name in ("a.png", "b.png", "sub/c.png"):
        (root / name).write_bytes(TINY_PNG)
    (root / "junk.png").write_bytes(b"\x89PNG not really")
    return root


def _outcome(source: Path) -> None:
    try:
        dataset = open_dataset(str(source))
    except UserError as error:
        assert "\n" not in str(error), str(error)
        return
    assert dataset.samples and dataset.classes
    for sample in dataset.samples[:10]:
        try:
            dataset.load(sample)
        except ImageLoadError as error:
            assert str(error)


@SETTINGS
@given(content=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_random_bytes_as_a_manifest(content: bytes, suffix: str) -> None:
    root = _folder()
    try:
        (root / f"m{suffix}").write_bytes(content)
        _outcome(root / f"m{suffix}")
    finally:
        shutil.rmtree(root)


@SETTINGS
@example(rows=[{"image": "nul\0.png", "label": "cat"}, {"image": "a" * 300 + ".png", "label": "dog"}], as_csv=False)
@given(rows=st.lists(st.one_of(st.fixed_dictionaries({"image": paths, "label": labels}),
                                st.dictionaries(st.sampled_from(["image", "label", "other"]), values, max_size=3)),
                      max_size=6),
       as_csv=st.booleans())
def test_random_manifests(rows: list[dict], as_csv: bool) -> None:
    root = _folder()
    try:
        if as_csv:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=["image", "label", "other"])
            writer.writeheader()
            writer.writerows(rows)
            (root / "m.csv").write_text(buffer.getvalue(), encoding="utf-8")
            _outcome(root / "m.csv")
        else:
            lines = [json.dumps(row, ensure_ascii=False) for row in rows]
            (root / "m.jsonl").write_text("\n".join(lines), encoding="utf-8")
            _outcome(root / "m.jsonl")
    finally:
        shutil.rmtree(root)


@SETTINGS
@given(images=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
       labels=st.lists(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="/\0"),
                               min_size=1, max_size=8), min_size=1, max_size=3))
def test_random_bytes_as_images_in_a_folder_dataset(images: list[bytes], labels: list[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="reader-"))
    try:
        for number, label in enumerate(labels):
            if label in (".", ".."):
                continue
            try:
                (root / label).mkdir(exist_ok=True)
            except OSError:
                continue  # a name this file system refuses (too long, …): no such dataset can exist
            for index, content in enumerate(images):
                (root / label / f"{number}-{index}.png").write_bytes(content)
        _outcome(root)
    finally:
        shutil.rmtree(root)
