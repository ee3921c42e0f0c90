"""Which run folders a report covers: a run folder as given, or every run folder under a sweep folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from classbench.errors import UserError
from classbench.store import STORE_NAME


def is_run(folder: Path) -> bool:
    return (folder / STORE_NAME).is_file() or (folder / "metrics.json").is_file()


def expand(folders: Sequence[Path]) -> list[Path]:
    """Run folders as given; a folder that is not a run (a sweep folder, `runs/`) stands for the
    runs beneath it, so `classbench report runs/sweep` covers every point of a sweep."""
    found: list[Path] = []
    for folder in folders:
        if is_run(folder):
            found.append(folder)
            continue
        if not folder.is_dir():
            raise UserError(f"{folder}: no such run folder")
        below = sorted({path.parent for name in (STORE_NAME, "metrics.json") for path in folder.rglob(name)})
        if not below:
            raise UserError(f"{folder}: not a classbench run folder, and no run folders below it "
                            f"(a run folder holds {STORE_NAME} or metrics.json)")
        found.extend(below)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())
