"""Readable labels from folder names, and the alias files that override them.

The rule (documented in the README): a leading numeric index and its separator are dropped
(`001.ak47` → `ak47`), Caltech's `-101` marker for classes taken from Caltech101 is dropped
(`253.faces-easy-101` → `faces-easy`), then `-` and `_` become spaces and runs of spaces collapse
(`faces easy`). Case is kept. An alias file replaces the result for the folders it names.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from classbench import safeyaml

from classbench.errors import UserError

_INDEX_PREFIX = re.compile(r"^\d+[._\- ]+(?=.)")
_CALTECH101_MARK = re.compile(r"[-_ ]101$")


def folder_label(folder_name: str) -> str:
    name = _INDEX_PREFIX.sub("", folder_name)
    name = _CALTECH101_MARK.sub("", name)
    name = re.sub(r"[-_]+", " ", name)
    return re.sub(r"\s+", " ", name).strip() or folder_name


def read_alias_file(path: Path) -> dict[str, str]:
    """Read `original → label` pairs from YAML, JSON or a two-column CSV."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot read label file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"label file {path}: not UTF-8 text") from None
    if path.suffix.lower() == ".csv":
        try:
            rows = [row for row in csv.reader(io.StringIO(text, newline=""))
                    if row and not row[0].startswith("#")]
        except csv.Error as error:
            raise UserError(f"{path}: not valid CSV ({error})") from None
        if rows and [cell.strip().lower() for cell in rows[0][:2]] in (["folder", "label"], ["name", "label"]):
            rows = rows[1:]
        bad = [row for row in rows if len(row) < 2]
        if bad:
            raise UserError(f"{path}: every row needs two columns, folder,label (got {bad[0]!r})")
        return {row[0].strip(): row[1].strip() for row in rows}
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else safeyaml.load(text, f"label file {path}")
    except (ValueError, RecursionError) as error:
        raise UserError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {error}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise UserError(f"{path}: expected a mapping of folder name → label, e.g. `001.ak47: rifle`")
    return {str(key): value for key, value in data.items()}
