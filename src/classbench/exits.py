"""How the command line ends when something outside the run's control stops it.

Ctrl-C, a full disk and a damaged store are not bugs in classbench, so each ends in one line
(what happened, what was kept, what to do) and an exit status a script can test: 130 for an
interrupt, as shells report SIGINT, so `classbench run … && classbench report …` never reports a
run that was stopped halfway.
"""

from __future__ import annotations

import errno
import shlex
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INTERRUPTED = 130
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class RunInterrupted(Exception):
    """Ctrl-C during a run in `folder`; raised instead of KeyboardInterrupt so typer does not swallow it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(str(folder))
        self.folder = folder


def resume_command(argv: list[str] | None = None) -> str:
    """The command that was run, as a user would type it again (the same command resumes a run)."""
    from classbench.models.api_response import redact_url

    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["classbench", *(redact_url(arg) if "://" in arg else arg for arg in args)])


def interrupted_line(folder: Path | None, argv: list[str] | None = None) -> str:
    """What an interrupted run kept and how to go on."""
    saved = _saved(folder) if folder is not None else None
    kept = f"; {saved} in {folder}" if saved else ""
    return f"interrupted{kept}. Resume with: {resume_command(argv)}"


def _saved(folder: Path) -> str | None:
    from classbench.store import STORE_NAME

    path = folder / STORE_NAME
    if not path.is_file():
        return "nothing was saved yet"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        done = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
        total = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return f"{done} of {total} images are answered and saved"


def os_error_line(error: OSError) -> str | None:
    """One line for the environment's errors a user can act on (a full disk, no permission), else None."""
    where = f" ({error.filename})" if error.filename else ""
    if error.errno in _DISK_FULL:
        return (f"the disk is full{where}: free some space, then run the same command again "
                "(what was answered is kept and a run resumes)")
    if error.errno == errno.EROFS:
        return f"read-only file system{where}: give a --out folder on writable storage"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}: check the permissions of that path, or use another one"
    return None


def sqlite_error_line(error: sqlite3.Error) -> str:
    """One line for a SQLite error that reached the top: a full disk, or a damaged store."""
    text = str(error)
    if "full" in text:
        return ("the disk is full while writing run.sqlite: free some space, then run the same command again "
                "(what was answered is kept and a run resumes)")
    if "locked" in text or "busy" in text:
        return f"run.sqlite is busy ({text}): another process holds it; wait for it, then try again"
    return (f"a run.sqlite could not be read ({text}): the file is damaged or not a classbench store; move it "
            "out of the run folder and run again to start over, or restore it from a copy")


def finish(code: object) -> None:
    """End with the status typer returned (it returns 130 for a Ctrl-C outside a run, saying nothing)."""
    if code == INTERRUPTED:
        _say(interrupted_line(None))
    if isinstance(code, int) and code:
        sys.exit(code)


@contextmanager
def one_line() -> Iterator[None]:
    """Turn an interrupt, a full disk or a damaged store that reaches the top into one line and a status."""
    try:
        yield
    except RunInterrupted as stopped:
        _say(interrupted_line(stopped.folder))
        sys.exit(INTERRUPTED)
    except sqlite3.Error as error:
        _say(f"error: {sqlite_error_line(error)}")
        sys.exit(1)
    except OSError as error:
        line = os_error_line(error)
        if line is None:
            raise
        _say(f"error: {line}")
        sys.exit(1)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
