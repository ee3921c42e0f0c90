"""The run store: one SQLite file per run folder, append-only, committed as answers arrive.

It holds the spec and provenance (table `meta`), the sampled images in order (`samples`), one
row per question asked (`questions`), one row per finished image (`predictions`) and one row per
process that worked on the run (`sessions`, for speed and memory). WAL mode with
`synchronous=NORMAL` survives `kill -9` of the process at any instant: a transaction is either
in the file or not, and a resumed run asks only what is missing. Metrics and reports are computed
from this file alone.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from classbench.datasets.base import Sample
from classbench.errors import UserError
from classbench.records import MODEL_ERROR, Prediction, Question, settled_failure
from classbench.spec import identity_differences

STORE_NAME = "run.sqlite"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (pos INTEGER PRIMARY KEY, image TEXT NOT NULL UNIQUE, label TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS questions (
    id INTEGER PRIMARY KEY,
    image TEXT NOT NULL,
    key TEXT NOT NULL,
    prompt TEXT,
    answer TEXT,
    label TEXT,
    latency_s REAL,
    tokens_in INTEGER,
    tokens_out INTEGER,
    detail TEXT,
    error TEXT,
    created REAL NOT NULL,
    UNIQUE (image, key)
);
CREATE TABLE IF NOT EXISTS predictions (
    image TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    prediction TEXT,
    status TEXT NOT NULL CHECK (status IN ('ok', 'invalid', 'failed')),
    error TEXT,
    latency_s REAL,
    detail TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    updated REAL NOT NULL,
    device TEXT,
    batch_size INTEGER,
    load_s REAL NOT NULL DEFAULT 0,
    inference_s REAL NOT NULL DEFAULT 0,
    n_images INTEGER NOT NULL DEFAULT 0,
    peak_rss_gb REAL,
    peak_gpu_gb REAL
);
"""


class Store:
    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.session_id: int | None = None
        self._depth = 0
        if read_only:
            self.db = _open_read_only(path)
            return
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            self.db.close()
            if isinstance(error, sqlite3.OperationalError):  # a full disk or no permission: not damage
                raise
            raise UserError(damaged(path, error)) from None

    @classmethod
    def open_existing(cls, folder: Path, read_only: bool = False) -> Store:
        """Open a run folder's store; `read_only` for reports, which must work on read-only media."""
        path = folder / STORE_NAME
        if not path.is_file():
            raise UserError(f"{folder}: not a classbench run folder (no {STORE_NAME})")
        return cls(path, read_only=read_only)

    def close(self) -> None:
        self.db.close()

    def discard(self) -> None:
        """Close and delete a store in which nothing was asked (a run that failed while starting)."""
        self.db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    # --- spec, provenance, samples -------------------------------------------------------------

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, values: dict[str, Any]) -> None:
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(key, json.dumps(value, default=str)) for key, value in values.items()],
            )

    def begin_or_resume(self, identity: dict[str, Any], samples: list[Sample], meta: dict[str, Any]) -> bool:
        """Start a new run, or check that this folder holds the same run. True when resuming."""
        stored = self.meta("identity")
        if stored is None:
            with self._transaction():
                self.db.executemany(
                    "INSERT INTO samples (pos, image, label) VALUES (?, ?, ?)",
                    [(pos, sample.id, sample.label) for pos, sample in enumerate(samples)],
                )
                self.db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [(key, json.dumps(value, default=str)) for key, value in
                     {"schema": SCHEMA_VERSION, "identity": identity, "created": time.time(), **meta}.items()],
                )
            return False
        differences = identity_differences(stored, identity)
        if differences:
            raise UserError(
                f"{self.path.parent} holds a different run ({'; '.join(differences)}). "
                "Use another --out folder, or the same settings to resume this one."
            )
        if self.samples() != [(sample.id, sample.label) for sample in samples]:
            raise UserError(
                f"{self.path.parent}: the dataset's images changed since this run started, so resuming would "
                "mix two samples. Use another --out folder for the new data."
            )
        return True

    def samples(self) -> list[tuple[str, str]]:
        return [tuple(row) for row in self.db.execute("SELECT image, label FROM samples ORDER BY pos")]

    # --- answers -------------------------------------------------------------------------------

    def questions_for(self, images: Iterable[str]) -> dict[str, dict[str, Question]]:
        """Questions already answered for these images (what a resumed run need not ask again).

        A question stored with an error is not answered: it is left out, asked again, and its row
        replaced by the new outcome.
        """
        found: dict[str, dict[str, Question]] = {}
        for image in images:
            rows = self.db.execute(
                "SELECT key, prompt, answer, label, latency_s, tokens_in, tokens_out, detail, error "
                "FROM questions WHERE image = ? AND error IS NULL ORDER BY id",
                (image,),
            )
            found[image] = {row[0]: _question(row) for row in rows}
        return found

    def finished_images(self) -> set[str]:
        """Images that need no more work: answered, or unreadable (model errors are asked again)."""
        rows = self.db.execute("SELECT image, status, error FROM predictions")
        return {image for image, status, error in rows
                if not (status == "failed" and (error or "").startswith(MODEL_ERROR))}

    def batch(self) -> _Transaction:
        """Group several writes into one transaction (nested writes join it)."""
        return self._transaction()

    def add_work(self, images: int, seconds: float) -> None:
        """Count images finished and inference time spent by this session."""
        if self.session_id is None:
            return
        with self._transaction():
            self.db.execute(
                "UPDATE sessions SET n_images = n_images + ?, inference_s = inference_s + ?, updated = ? WHERE id = ?",
                (images, seconds, time.time(), self.session_id),
            )

    def record(self, image: str, questions: Iterable[Question], prediction: Prediction | None) -> None:
        """Write one image's new questions (and its prediction, when final) in one transaction."""
        now = time.time()
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO questions (image, key, prompt, answer, label, latency_s, tokens_in, tokens_out, "
                "detail, error, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(image, q.key, q.prompt, q.answer, q.label, q.latency_s, q.tokens_in, q.tokens_out,
                  _json(q.detail), q.error, now) for q in questions],
            )
            if prediction is not None and prediction.status == "failed" and prediction.error:
                previous = self.db.execute("SELECT error FROM predictions WHERE image = ?", (image,)).fetchone()
                prediction = replace(prediction, error=settled_failure(previous and previous[0], prediction.error))
            if prediction is not None:
                self.db.execute(
                    "INSERT OR REPLACE INTO predictions (image, label, prediction, status, error, latency_s, detail, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (prediction.image, prediction.label, prediction.prediction, prediction.status,
                     prediction.error, prediction.latency_s, _json(prediction.detail), now),
                )

    def predictions(self) -> list[Prediction]:
        rows = self.db.execute(
            "SELECT p.image, p.label, p.prediction, p.status, p.error, p.latency_s, p.detail "
            "FROM predictions p JOIN samples s ON s.image = p.image ORDER BY s.pos"
        )
        return [Prediction(*row[:6], detail=json.loads(row[6]) if row[6] else None) for row in rows]

    def all_questions(self) -> Iterator[tuple[str, Question]]:
        rows = self.db.execute(
            "SELECT image, key, prompt, answer, label, latency_s, tokens_in, tokens_out, detail, error "
            "FROM questions ORDER BY id"
        )
        for row in rows:
            yield row[0], _question(row[1:])

    def token_rows(self, after_id: int = 0) -> Iterator[tuple[int, str, int | None, int | None]]:
        """(row id, image, tokens in, tokens out) of the questions stored after row `after_id`, in order:
        what a spending cap reads incrementally."""
        yield from self.db.execute(
            "SELECT id, image, tokens_in, tokens_out FROM questions WHERE id > ? ORDER BY id", (after_id,))

    def token_totals(self) -> tuple[int, int]:
        """Input and output tokens over every question in the store (failed attempts report none)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0) FROM questions").fetchone()
        return int(row[0]), int(row[1])

    # --- sessions: speed and memory --------------------------------------------------------------

    def start_session(self, device: str, batch_size: int) -> None:
        now = time.time()
        with self._transaction():
            cursor = self.db.execute(
                "INSERT INTO sessions (started, updated, device, batch_size) VALUES (?, ?, ?, ?)",
                (now, now, device, batch_size),
            )
        self.session_id = cursor.lastrowid

    def update_session(self, **values: float | None) -> None:
        if self.session_id is None or not values:
            return
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._transaction():
            self.db.execute(
                f"UPDATE sessions SET {assignments}, updated = ? WHERE id = ?",
                (*values.values(), time.time(), self.session_id),
            )

    def sessions(self) -> list[dict[str, Any]]:
        cursor = self.db.execute("SELECT * FROM sessions ORDER BY id")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    # -----------------------------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self)


class _Transaction:
    """BEGIN/COMMIT around the outermost block only, so writes nest into one transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> None:
        if self.store._depth == 0:
            self.store.db.execute("BEGIN IMMEDIATE")
        self.store._depth += 1

    def __exit__(self, kind: type | None, *_: object) -> None:
        self.store._depth -= 1
        if self.store._depth == 0:
            self.store.db.execute("ROLLBACK" if kind else "COMMIT")


def _open_read_only(path: Path) -> sqlite3.Connection:
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


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, default=float)


def _question(row: tuple) -> Question:
    return Question(*row[:7], detail=json.loads(row[7]) if row[7] else None, error=row[8])
