"""The run folder's lock (#13, defect 2): one holder at a time, gone with its process however it ends,
never passed on to child processes (servers, workers) that may outlive the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from classbench.errors import UserError

HOLD = ("import sys, time; from pathlib import Path; from classbench import runlock\n"
        "with runlock.hold(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n")


def test_a_killed_holder_leaves_no_lock(tmp_path: Path) -> None:
    from classbench import runlock

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError, match=rf"^{out} is in use by another classbench run \(PID {holder.pid} on "):
            with runlock.hold(out):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with runlock.hold(out):
        assert (out / runlock.LOCK_NAME).read_text().startswith(f"PID {os.getpid()} on ")


def test_children_do_not_keep_the_lock(tmp_path: Path) -> None:
    from classbench import runlock

    out = tmp_path / "run"
    with runlock.hold(out):
        (out / "run.sqlite").touch()  # a folder with a run in it keeps its lock file
        server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], close_fds=False)
        ready, started = os.pipe()
        forked = os.fork()
        if forked == 0:  # a worker forked without exec, as multiprocessing does on Linux
            os.write(started, b"x")  # os.fork has returned here, so the fork handlers have run
            time.sleep(60)
            os._exit(0)
        assert os.read(ready, 1) == b"x"
        os.close(ready)
        os.close(started)
    try:
        with runlock.hold(out):  # both children still run, and the folder is free
            assert server.poll() is None and os.waitpid(forked, os.WNOHANG) == (0, 0)
    finally:
        server.kill()
        server.wait()
        os.kill(forked, signal.SIGKILL)
        os.waitpid(forked, 0)


def test_an_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    from classbench import runlock

    (tmp_path / "taken").write_text("x")
    with pytest.raises(UserError, match="is an existing file, not a folder"):
        with runlock.hold(tmp_path / "taken"):
            pass
