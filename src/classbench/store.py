"""The run store: one SQLite file per run folder, append-only, committed as answers arrive.

It holds the spec and provenance (table `meta`), the sampled images in order (`samples`), one
row per question asked (`questions`, written compactly: see `classbench.compact`; each distinct
prompt text is kept once in `prompts`), one row per finished image (`predictions`) and one row per
process that worked on the run (`sessions`, for speed and memory). WAL mode with
`synchronous=NORMAL` survives `kill -9` of the process at any instant: a transaction is either
in the file or not, and a resumed run asks only what is missing. Metrics and reports are computed
from this file alone.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from classbench.compact import HOLE, Codec
from classbench.datasets.base import Sample
from classbench.errors import UserError
from classbench.records import MODEL_ERROR, Prediction, Question, settled_failure
from classbench.spec import identity_differences
from classbench.store_files import damaged, open_read_only

STORE_NAME = "run.sqlite"
SCHEMA_VERSION = "2"
"""1: classbench 0.1, every question's prompt and detail in full. 2: prompts kept once (`prompts`,
`questions.prompt_id`) and class-name lists packed. A version-1 file is upgraded in place when
opened (one new table, one new column); its old rows are read as they are."""

_COLUMNS = "key, prompt, prompt_id, answer, label, latency_s, tokens_in, tokens_out, detail, error"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (pos INTEGER PRIMARY KEY, image TEXT NOT NULL UNIQUE, label TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS questions (
    id INTEGER PRIMARY KEY,
    image TEXT NOT NULL,
    key TEXT NOT NULL,
    prompt TEXT,
    prompt_id INTEGER,
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
CREATE TABLE IF NOT EXISTS prompts (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
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
        self._codec: Codec | None = None
        self._prompt_ids: dict[str, int] = {}
        self._prompt_texts: dict[int, str] = {}
        if read_only:
            self.db = open_read_only(path)
        else:
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            if read_only:
                self._in_memory_if_old()
            else:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(_SCHEMA)
            self._upgrade()
        except sqlite3.DatabaseError as error:
            self.db.close()
            if isinstance(error, sqlite3.OperationalError):  # a full disk or no permission: not damage
                raise
            raise UserError(damaged(path, error)) from None

    def _in_memory_if_old(self) -> None:
        """A version-1 file opened read-only is upgraded in a copy held in memory, never on disk."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(questions)")}
        if "prompt_id" not in columns:
            memory = sqlite3.connect(":memory:", isolation_level=None)
            self.db.backup(memory)
            self.db.close()
            self.db = memory

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
        if "classes" in values:
            self._codec = None
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
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM questions WHERE image = ? AND error IS NULL ORDER BY id",
                                   (image,))
            found[image] = {row[0]: self._question(row) for row in rows}
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
            rows = []
            for q in questions:
                prompt, detail = self.codec().pack(q.prompt, q.detail)
                own = prompt if prompt is not None and prompt == q.prompt and HOLE in prompt else None
                rows.append((image, q.key, own, None if own else self._prompt_id(prompt), q.answer, q.label,
                             q.latency_s, q.tokens_in, q.tokens_out, detail, q.error, now))
            self.db.executemany(
                "INSERT OR REPLACE INTO questions (image, key, prompt, prompt_id, answer, label, latency_s, tokens_in, "
                "tokens_out, detail, error, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
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

    def predictions(self, details: bool = True) -> list[Prediction]:
        """Every finished image in sample order; `details=False` leaves `detail` unread (None), for
        callers that need only labels and outcomes (a report reads each run several times)."""
        rows = self.db.execute(
            "SELECT p.image, p.label, p.prediction, p.status, p.error, p.latency_s, "
            f"{'p.detail' if details else 'NULL'} "
            "FROM predictions p JOIN samples s ON s.image = p.image ORDER BY s.pos"
        )
        return [Prediction(*row[:6], detail=json.loads(row[6]) if row[6] else None) for row in rows]

    def all_questions(self) -> Iterator[tuple[str, Question]]:
        rows = self.db.execute(f"SELECT image, {_COLUMNS} FROM questions ORDER BY id").fetchall()
        for row in rows:
            yield row[0], self._question(row[1:])

    def question_outcomes(self) -> list[tuple[str, str, int, str | None]]:
        """(image, key, attempts, error) of every question in the order asked: what usage counts."""
        rows = self.db.execute("SELECT image, key, detail, error FROM questions ORDER BY id")
        return [(image, key, int((json.loads(detail) if detail else {}).get("attempts", 1)), error)
                for image, key, detail, error in rows]

    def token_totals(self) -> tuple[int, int]:
        """Input and output tokens over every question (failed attempts report none)."""
        row = self.db.execute("SELECT COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0) FROM questions")
        tokens_in, tokens_out = row.fetchone()
        return int(tokens_in), int(tokens_out)

    def token_rows(self, since_id: int = 0) -> list[tuple[int, str, int | None, int | None]]:
        """(id, image, tokens_in, tokens_out) of the questions written after row `since_id`, so a
        cost cap checked before every chunk reads only what is new."""
        return self.db.execute("SELECT id, image, tokens_in, tokens_out FROM questions WHERE id > ? ORDER BY id",
                               (since_id,)).fetchall()

    def done_without_data(self, identity: dict[str, Any]) -> int | None:
        """The number of sampled images when this folder holds the run `identity` and every image is
        finished, so a resumed run with nothing to do need not scan its dataset; None otherwise."""
        stored = self.meta("identity")
        if stored is None or identity_differences(stored, identity):
            return None
        images = [image for image, in self.db.execute("SELECT image FROM samples")]
        return len(images) if images and self.finished_images().issuperset(images) else None

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

    def codec(self) -> Codec:
        """Packs this run's questions; built from the run's class list once it is known."""
        if self._codec is None:
            classes = self.meta("classes")
            if classes is None:
                return Codec(None)
            self._codec = Codec(classes)
        return self._codec

    def _prompt_id(self, text: str | None) -> int | None:
        if text is None:
            return None
        found = self._prompt_ids.get(text)
        if found is None:
            self.db.execute("INSERT OR IGNORE INTO prompts (text) VALUES (?)", (text,))
            found = self.db.execute("SELECT id FROM prompts WHERE text = ?", (text,)).fetchone()[0]
            self._prompt_ids[text] = found
        return found

    def _prompt_text(self, prompt_id: int) -> str:
        found = self._prompt_texts.get(prompt_id)
        if found is None:
            found = self.db.execute("SELECT text FROM prompts WHERE id = ?", (prompt_id,)).fetchone()[0]
            self._prompt_texts[prompt_id] = found
        return found

    def _question(self, row: tuple) -> Question:
        """A questions row (`_COLUMNS`) as it was asked: a version-1 row holds its prompt in full."""
        key, prompt, prompt_id, *values, detail, error = row
        if prompt_id is not None:
            prompt = self._prompt_text(prompt_id)
        prompt, unpacked = self.codec().unpack(prompt, detail, template=prompt_id is not None)
        return Question(key, prompt, *values, detail=unpacked, error=error)

    def _upgrade(self) -> None:
        """Bring a version-1 file (classbench 0.1) to this layout in place; refuse a newer one."""
        version = self.meta("schema")
        if version is not None and int(version) > int(SCHEMA_VERSION):
            raise UserError(f"{self.path} was written by a newer classbench (store version {version}, this one "
                            f"reads up to {SCHEMA_VERSION}); upgrade classbench to open it")
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(questions)")}
        if "prompt_id" in columns:
            return
        with self._transaction():
            self.db.execute("ALTER TABLE questions ADD COLUMN prompt_id INTEGER")
            if version is not None:
                self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                                (json.dumps(SCHEMA_VERSION),))

    def _forget(self) -> None:
        """Drop what was cached from writes that a rollback has undone."""
        self._prompt_ids.clear()
        self._prompt_texts.clear()

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
            if kind:
                self.store._forget()


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, default=float)


