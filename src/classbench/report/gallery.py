"""The report's misclassified gallery: each wrong image's thumbnail, its label, the prediction and
the model's raw answers, all read from the run's store.

Images are loaded by the ids the store holds, from the dataset's root (`image_source`): no scan of
the dataset. A sweep's points share most of their images, so each thumbnail is made once per report.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from classbench.errors import UserError
from classbench.spec import flat_view
from classbench.store import STORE_NAME, Store

GALLERY_SIZE = 24
THUMBNAIL_PX = 96
ANSWER_CHARS = 300


class Thumbnails:
    """Image sources and thumbnails for one report, shared by its runs."""

    def __init__(self) -> None:
        self.sources: dict[tuple, tuple[Any, str | None]] = {}
        self.made: dict[tuple, str | None] = {}

    def source(self, spec: dict[str, Any]) -> tuple[tuple, Any, str | None]:
        from classbench.datasets.cache import SETTINGS, image_source

        key = tuple(spec.get(name) for name in SETTINGS)
        if key not in self.sources:
            try:
                self.sources[key] = (image_source(spec), None)
            except UserError as error:
                self.sources[key] = (None, str(error))
            except Exception as error:  # an optional extra: the gallery goes, the report stays
                self.sources[key] = (None, f"{type(error).__name__}: {error}")
        return (key, *self.sources[key])

    def thumbnail(self, key: tuple, dataset: Any, image: str, label: str) -> str | None:
        if (key, image) not in self.made:
            self.made[key, image] = _thumbnail(dataset, image, label)
        return self.made[key, image]


def gallery(folder: Path, thumbnails: Thumbnails) -> tuple[list[dict[str, Any]], str | None]:
    """Tiles of the first misclassified images, and a note on what is left out (or why no images)."""
    if not (folder / STORE_NAME).is_file():
        return [], "no run.sqlite in this folder, so no images or raw answers to show"
    store = Store.open_existing(folder, read_only=True)
    try:
        wrong = [p for p in store.predictions(details=False) if p.status != "failed" and p.prediction != p.label]
        chosen = wrong[:GALLERY_SIZE]
        answers = {image: [_clip(f"{key}: {question.answer}") for key, question in asked.items()]
                   for image, asked in store.questions_for(p.image for p in chosen).items()}
        spec = flat_view(store.meta("spec"))
    finally:
        store.close()
    if not wrong:
        return [], "no misclassified images"
    key, dataset, problem = thumbnails.source(spec)
    tiles = [{"image": p.image, "label": p.label, "prediction": p.prediction or "(invalid)",
              "answers": answers[p.image],
              "src": thumbnails.thumbnail(key, dataset, p.image, p.label) if dataset is not None else None}
             for p in chosen]
    note = f"the first {len(chosen)} of {len(wrong)} misclassified images" if len(wrong) > len(chosen) else None
    if problem:
        note = f"images not shown: {problem}"
    return tiles, note


def _thumbnail(dataset: Any, image: str, label: str) -> str | None:
    from classbench.datasets import Sample
    from classbench.errors import ImageLoadError

    try:
        picture = dataset.load(Sample(image, label))
    except (ImageLoadError, OSError, KeyError, IndexError, ValueError):
        return None
    picture = picture.convert("RGB")
    picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _clip(text: str) -> str:
    return text if len(text) <= ANSWER_CHARS else text[: ANSWER_CHARS - 1] + "…"
