"""CSV and JSONL manifests: one `image,label` row per sample, image paths relative to the manifest."""

from __future__ import annotations

import csv
import io
import json
import posixpath
from pathlib import Path

from classbench.datasets.base import FileDataset, Sample
from classbench.errors import UserError


def open_manifest(path: Path, image_column: str | None = None, label_column: str | None = None) -> FileDataset:
    """Read a manifest. A label is kept exactly as the json or csv module parses it (spaces, newlines,
    U+2028 included: it is the user's class name); an image path is stripped and normalised
    lexically (`a/../b/x.png` is `b/x.png`), so one file listed under two spellings is refused as
    listed twice instead of counted twice. Symbolic links are not followed for this."""
    image_key, label_key = image_column or "image", label_column or "label"
    rows = _read_rows(path)
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for number, row in rows:
        missing = [key for key in (image_key, label_key) if row.get(key) is None or not str(row[key]).strip()]
        if missing:
            raise UserError(
                f"{path}:{number}: no value for column {missing[0]!r}. Every row needs "
                f"{image_key!r} and {label_key!r} (use --image-column/--label-column for other names)."
            )
        if isinstance(row[image_key], (dict, list)) or isinstance(row[label_key], (dict, list)):
            raise UserError(f"{path}:{number}: {image_key!r} and {label_key!r} must be a path and a class name, "
                            "not a list or mapping")
        given = str(row[image_key]).strip()
        image = posixpath.normpath(Path(given).as_posix())
        if image in seen:
            spelled = f" (as {given!r})" if given != image else ""
            raise UserError(f"{path}:{number}: image {image!r}{spelled} is listed twice (first on line {seen[image]})")
        seen[image] = number
        samples.append(Sample(id=image, label=str(row[label_key])))
    if not samples:
        raise UserError(f"{path}: the manifest lists no images")
    classes = sorted({sample.label for sample in samples})
    return FileDataset(name=path.stem, classes=classes, samples=samples, root=path.parent)


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs. JSONL is split on newlines only (JSON strings may hold U+2028 or U+0085,
    which `str.splitlines` would split on); CSV records are the csv module's, quoted newlines included,
    and a row's number is the line it starts on."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise UserError(f"cannot read manifest {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"manifest {path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    if path.suffix.lower() == ".jsonl":
        return _jsonl_rows(path, text)
    return _csv_rows(path, text)


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        except RecursionError:
            raise UserError(f"{path}:{number}: JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: each line must be a JSON object like {{\"image\": …, \"label\": …}}")
        rows.append((number, row))
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict]] = []
    header: list[str] | None = None
    start = 1
    try:
        for record in reader:
            if header is None:
                header = record
            elif record:
                rows.append((start, dict(zip(header, record))))
            start = reader.line_num + 1
    except csv.Error as error:
        raise UserError(f"{path}:{start}: not valid CSV ({error})") from None
    return rows
