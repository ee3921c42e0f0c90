"""Opening a run store that may be on read-only media, or damaged.

A report must read a finished run from a DVD, a read-only mount or a colleague's folder without
write access, where opening SQLite in WAL mode the usual way fails (`unable to open database
file`: it wants to create the -shm file). And a store SQLite cannot read must cost one line that
names the file and says what to do, not a traceback.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from classbench.errors import UserError


def open_read_only(path: Path) -> sqlite3.Connection:
    """Open for reading without writing anything: `mode=ro` reads a WAL store's latest answers where the
    folder is writable or its -shm file exists; on read-only media without one, `immutable=1` reads the
    main file (a cleanly finished run has everything there)."""
    last: sqlite3.DatabaseError | None = None
    for mode in ("mode=ro", "immutable=1"):
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, isolation_level=None, timeout=30)
        except sqlite3.DatabaseError as error:
            last = error
            continue
        try:
            db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            return db
        except sqlite3.OperationalError as error:
            last = error
            db.close()
            if "no such table" in str(error):
                break
        except sqlite3.DatabaseError as error:
            db.close()
            raise UserError(damaged(path, error)) from None
    raise UserError(damaged(path, last))


def damaged(path: Path, error: BaseException | None) -> str:
    """The one line for a store SQLite cannot read: which file, and what to do."""
    return (f"{path}: cannot read this run store ({error}); it is damaged or not a classbench store. Move it "
            "out of the run folder (a run then starts over there) or restore it from a copy")
