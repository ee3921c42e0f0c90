"""One process at a time per run folder: an exclusive lock that a crash cannot leave behind.

Two `classbench run`s on one `--out` would each ask every question (an API model bills both)
while the store records the answers once. The run therefore holds `flock(LOCK_EX)` on
`OUT/.classbench.lock` for as long as it works on the folder. The kernel drops an flock when the
process dies, however it dies (`kill -9` included), so a stale lock file never blocks a later run:
the file may stay behind, the lock does not.

The lock's descriptor must not outlive the run in another process: it is opened close-on-exec
(child programs such as `transformers serve` or Ray's workers never get it), and a process forked
without exec (multiprocessing's default on Linux) closes its copy at once, so a worker that
lingers after the run cannot keep the folder locked. The file holds the holder's PID, host and
start time, which is what the refusal names.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from classbench.errors import UserError

LOCK_NAME = ".classbench.lock"

_held: set[int] = set()
"""Descriptors of the locks this process holds, closed in forked children (see `_close_in_child`)."""


def _close_in_child() -> None:
    for descriptor in list(_held):
        try:
            os.close(descriptor)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


def prepare_folder(out: Path) -> None:
    """Create the run folder, or say in one line why it cannot be one."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file, not a folder: give a folder path for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"--out {out}: a part of this path is a file, not a folder: give another folder") from None
    except OSError as error:
        raise UserError(f"--out {out}: cannot create the run folder ({error.strerror}): "
                        "give a folder you can write to") from None


@contextmanager
def hold(out: Path) -> Iterator[None]:
    """Hold the run folder's lock for the duration of the block, or refuse with who holds it."""
    created = not out.exists()
    prepare_folder(out)
    path = out / LOCK_NAME
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise UserError(f"--out {out}: cannot create its lock file {path.name} ({error.strerror}): "
                        "give a folder you can write to") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = _read(descriptor)
        os.close(descriptor)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise UserError(f"{out} is in use by another classbench run ({holder}): wait for it to finish, "
                            "or stop it, or use another --out") from None
        raise UserError(f"--out {out}: cannot lock the run folder ({error.strerror})") from None
    _held.add(descriptor)
    try:
        _write(descriptor)
        yield
    finally:
        _held.discard(descriptor)
        if created and os.listdir(out) == [LOCK_NAME]:  # a run that failed before writing anything
            path.unlink(missing_ok=True)
            out.rmdir()
        os.close(descriptor)  # releases the flock; the file stays, harmless without a holder


def _write(descriptor: int) -> None:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    text = f"PID {os.getpid()} on {socket.gethostname()}, started {started}\n".encode()
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, text, 0)
    except OSError:
        pass  # a full disk must not stop the run here; the refusal then names no holder


def _read(descriptor: int) -> str:
    try:
        text = os.pread(descriptor, 300, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "a process that has not written its PID yet"
