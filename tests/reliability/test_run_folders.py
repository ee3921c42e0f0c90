"""`classbench run` and `report` as a user meets them when runs are stopped, doubled, or their folders
damaged, read-only or full (#13). Real runs of the shipped EfficientNet-Lite0 on small trees.

Read-only media and a full disk are real: a read-only bind mount and a 40 kB tmpfs, made inside an
unprivileged user namespace (`unshare -rm`); where the kernel forbids that, those two tests skip.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_rows import stored_rows
from trees import make_tree, photo

pytestmark = pytest.mark.slow
PYTHON = sys.executable
CLASSBENCH = [PYTHON, "-m", "classbench"]
FOLDERS = ("001.ak47", "002.american-flag")


def classbench(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*CLASSBENCH, *args], capture_output=True, text=True, timeout=timeout)


def run_args(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--dataset", str(dataset), "--model", "efficientnet-lite0", "--out", str(out), "--no-progress",
            *extra]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("small") / "data", folders=FOLDERS, per_class=4, background=False)


@pytest.fixture(scope="module")
def finished(small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    done = classbench(*run_args(small, out))
    assert done.returncode == 0, done.stderr
    return out


def test_ctrl_c_exits_130_saying_what_was_saved_and_a_second_run_is_refused(tmp_path: Path) -> None:
    data = make_tree(tmp_path / "big", folders=FOLDERS, per_class=150, background=False)
    out = tmp_path / "run"
    first = subprocess.Popen([*CLASSBENCH, *run_args(data, out, "--batch-size", "1")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while stored_rows(out, "predictions") < 3 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()
        second = classbench(*run_args(data, out, "--batch-size", "1"))
        assert second.returncode == 2
        assert re.fullmatch(rf"error: {re.escape(str(out))} is in use by another classbench run \(PID {first.pid} "
                            r"on .+, started .+\): .*\n", second.stderr), second.stderr
        assert first.poll() is None, "the run ended before it could be interrupted: give it more images"
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, stderr
    saved = stored_rows(out, "predictions")
    assert 3 <= saved < 300
    last = stderr.strip().splitlines()[-1]
    assert last == (f"interrupted; {saved} of 300 images are answered and saved in {out}. Resume with: classbench "
                    f"run --dataset {data} --model efficientnet-lite0 --out {out} --no-progress --batch-size 1"), stderr
    report = classbench("report", str(out))
    assert report.returncode == 0 and f"| efficientnet-lite0 (incomplete: {saved} of 300 scored) |" in report.stdout


def test_an_out_that_is_a_file_is_one_line(small: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a folder")
    done = classbench(*run_args(small, tmp_path / "taken"))
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: --out {tmp_path / 'taken'} is an existing file, not a folder: give a folder path " \
                          "for the run\n"


def test_a_damaged_store_is_one_line_and_the_report_shows_the_good_runs(finished: Path, small: Path,
                                                                       tmp_path: Path) -> None:
    good, bad, junk = tmp_path / "good", tmp_path / "bad", tmp_path / "junk"
    shutil.copytree(finished, good)
    shutil.copytree(finished, bad)
    with (bad / "run.sqlite").open("r+b") as handle:  # keep the header and schema page, lose the rest
        handle.truncate(4096)
    junk.mkdir()
    (junk / "run.sqlite").write_bytes(os.urandom(8192))
    report = classbench("report", str(good), str(bad), str(junk))
    assert report.returncode == 1
    assert "| efficientnet-lite0 | direct |" in report.stdout and report.stdout.count("efficientnet") == 1
    lines = report.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in report.stderr, report.stderr
    assert lines[0].startswith(f"not reported: {bad / 'run.sqlite'}: cannot read this run store (")
    assert lines[1].startswith(f"not reported: {junk / 'run.sqlite'}: cannot read this run store "
                               "(file is not a database)")
    resumed = classbench(*run_args(small, junk))
    assert resumed.returncode == 2 and resumed.stderr.count("\n") == 1
    assert f"{junk / 'run.sqlite'}: cannot read this run store (file is not a database)" in resumed.stderr


def test_one_class_warns_and_compare_says_when_the_datasets_differ(finished: Path, small: Path,
                                                                    tmp_path: Path) -> None:
    other = make_tree(tmp_path / "other", folders=FOLDERS, per_class=4, background=False)
    for index, image in enumerate(sorted(other.rglob("*.jpg"))):
        photo(500 + index).save(image)  # same file names, other pictures
    one = classbench(*run_args(other, tmp_path / "one", "--classes", "1"))
    assert one.returncode == 0, one.stderr
    assert "warning: the run has one class" in one.stderr
    compared = classbench("report", "--compare", str(finished), str(tmp_path / "one"))
    assert compared.returncode == 0, compared.stderr
    assert f"note: A ran on the dataset {small} and B on {other}" in compared.stdout


def _in_namespace(script: str) -> subprocess.CompletedProcess:
    """Run a shell script as root of a new user and mount namespace (mounts there touch nothing outside)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) here to make a read-only or full file system")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not allowed here: {probe.stderr.decode().strip()}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=180,
                          env=env)


def test_a_run_on_read_only_media_can_be_reported(finished: Path, tmp_path: Path) -> None:
    copy = tmp_path / "readonly"
    shutil.copytree(finished, copy)
    done = _in_namespace(f"mount --bind {copy} {copy} && mount -o remount,bind,ro {copy} && "
                         f"touch {copy}/probe 2>/dev/null && echo WRITABLE; exec {PYTHON} -m classbench report {copy}")
    assert "WRITABLE" not in done.stdout
    assert done.returncode == 0, done.stderr
    assert "| efficientnet-lite0 | direct |" in done.stdout
    assert sorted(path.name for path in copy.iterdir()) == sorted(path.name for path in finished.iterdir())


def test_a_full_disk_is_one_line(small: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    done = _in_namespace(f"mount -t tmpfs -o size=40k tmpfs {full} && exec {PYTHON} -m classbench "
                         + " ".join(run_args(small, full / "run")))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: the disk is full")
