"""When a run's answers reach the store: within 0.2 s of arriving, and all of them at a chunk's end.

A commit per answer costs more than the answer itself once a server answers in a fraction of a
millisecond (at 2,000 questions a second, SQLite's per-transaction work was most of classbench's
own CPU), so answers are gathered and committed together. Waiting for the runner's next step
would not bound the loss, because the runner is inside the next model call while answers wait: so
a thread of its own, with its own connection to the store, commits whatever has waited 0.2 s.
`flush` commits the rest in the caller's thread and returns once everything handed over is in
the file, which the runner does at every chunk's end before it reads the store again. A crash
(`kill -9`) loses at most the answers of the last 0.2 s and those still in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from classbench.records import Record
from classbench.store import Store

COMMIT_EVERY_S = 0.2


class Committer:
    """Commits records handed over by `add` from a background thread, at most `every_s` after they came."""

    def __init__(self, store: Store, every_s: float = COMMIT_EVERY_S) -> None:
        self.store = store
        self.every_s = every_s
        self._pending: list[Record] = []
        self._images = 0
        self._seconds = 0.0
        self._oldest = 0.0
        self._closed = False
        self._error: BaseException | None = None
        self._lock = threading.Condition()
        self._writing = threading.Lock()
        """Held while records are written, so that `flush` returns only after a write the thread began."""
        self._thread = threading.Thread(target=self._run, args=(store.path, store.session_id), name="commits",
                                        daemon=True)
        self._thread.start()

    def add(self, records: Sequence[Record], images: int, seconds: float) -> None:
        """Hand over records, with the images they finish and the inference seconds they took."""
        self._raise()
        if not records:
            return
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
                self._lock.notify()
            self._pending.extend(records)
            self._images += images
            self._seconds += seconds

    def flush(self) -> None:
        """Commit everything handed over so far, now, through the caller's own connection."""
        with self._writing:
            self._raise()
            _commit(self.store, *self._take())

    def close(self) -> None:
        """Commit what is left and stop the thread (also after an error or an interrupt)."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join()
        self.flush()

    def _take(self) -> tuple[list[Record], int, float]:
        with self._lock:
            taken = self._pending, self._images, self._seconds
            self._pending, self._images, self._seconds = [], 0, 0.0
        return taken

    def _run(self, path: Path, session_id: int | None) -> None:
        store = Store(path)
        store.session_id = session_id
        try:
            while self._wait():
                with self._writing:
                    _commit(store, *self._take())
        except BaseException as error:  # handed to the runner's thread at its next add or flush
            self._error = error
        finally:
            store.close()

    def _wait(self) -> bool:
        """Sleep until the oldest pending record is `every_s` old; False once closed."""
        with self._lock:
            while not self._closed:
                if not self._pending:
                    self._lock.wait()
                    continue
                left = self._oldest + self.every_s - time.monotonic()
                if left <= 0:
                    return True
                self._lock.wait(left)
            return False

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _commit(store: Store, records: list[Record], images: int, seconds: float) -> None:
    if not records:
        return
    with store.batch():
        for image, questions, prediction in records:
            store.record(image, questions, prediction)
        store.add_work(images=images, seconds=seconds)
