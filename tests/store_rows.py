"""How far a run has got, read from its store as another process would see it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def stored_rows(out: Path, table: str, where: str = "1") -> int:
    """Rows of `table` in `out`'s run.sqlite, through a read-only connection of its own (it never creates
    the file); 0 before the store exists or while it cannot be read."""
    try:
        with sqlite3.connect(f"file:{out / 'run.sqlite'}?mode=ro", uri=True) as db:
            return db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0]
    except sqlite3.Error:
        return 0
