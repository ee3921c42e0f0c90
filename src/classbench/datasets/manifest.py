"""CSV and JSONL manifests: one `image,label` row per sample, image paths relative to the manifest."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from classbench.datasets.base import FileDataset, Sample
from classbench.errors import UserError


def open_manifest(path: Path, image_column: str | None = None, label_column: str | None = None) -> FileDataset:
    image_key, label_key = image_column or "image", label_column or "label"
    rows = _read_rows(path)
    samples: list[Sample] = []
    seen: set[str] = set()
    for number, row in rows:
        missing = [key for key in (image_key, label_key) if not str(row.get(key) or "").strip()]
        if missing:
            raise UserError(
                f"{path}:{number}: no value for column {missing[0]!r}. Every row needs "
                f"{image_key!r} and {label_key!r} (use --image-column/--label-column for other names)."
            )
        image = Path(str(row[image_key]).strip()).as_posix()
        if image in seen:
            raise UserError(f"{path}:{number}: image {image!r} is listed twice")
        seen.add(image)
        samples.append(Sample(id=image, label=str(row[label_key]).strip()))
    if not samples:
        raise UserError(f"{path}: the manifest lists no images")
    classes = sorted({sample.label for sample in samples})
    return FileDataset(name=path.stem, classes=classes, samples=samples, root=path.parent)


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise UserError(f"cannot read manifest {path}: {error.strerror}") from None
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{number}: each line must be a JSON object like {{\"image\": …, \"label\": …}}")
            rows.append((number, row))
        return rows
    reader = csv.DictReader(text.splitlines())
    return [(number, row) for number, row in enumerate(reader, start=2)]
