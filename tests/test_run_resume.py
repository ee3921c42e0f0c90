"""A real `classbench run` of the shipped EfficientNet-Lite0: broken files survive, kill -9 resumes exactly."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store_rows import stored_rows
from trees import add_broken, make_tree

pytestmark = pytest.mark.slow
CLASSBENCH = [sys.executable, "-m", "classbench"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tree(tmp_path_factory.mktemp("data") / "caltech", per_class=5)
    add_broken(root / "001.ak47")
    (root / "003.backpack" / "readme.txt").write_text("not an image")
    (root / "099.empty").mkdir()
    return root


def command(tree: Path, out: Path, *extra: str) -> list[str]:
    return [*CLASSBENCH, "run", "--dataset", str(tree), "--model", "efficientnet-lite0", "--strategy", "direct",
            "--classes", "6", "--background", "clutter", "--seed", "0", "--batch-size", "3", "--out", str(out),
            "--no-progress", *extra]


def predictions(out: Path) -> list[dict[str, str]]:
    with (out / "predictions.csv").open() as handle:
        return [{k: row[k] for k in ("image", "label", "prediction", "status")} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def reference(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    done = subprocess.run(command(tree, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| efficientnet-lite0 | direct |" in done.stdout
    return out


def test_run_survives_broken_files_and_agrees_with_itself(reference: Path) -> None:
    metrics = json.loads((reference / "metrics.json").read_text())
    rows = predictions(reference)
    scored = [row for row in rows if row["status"] != "failed"]
    failed = {Path(row["image"]).name for row in rows if row["status"] == "failed"}
    assert failed == {"zero.jpg", "truncated.png", "corrupt.jpg", "garbage.jpg", "bomb.png"}
    assert metrics["n_failed"] == 5 and metrics["n_images"] == len(scored) == 6 * 5
    assert metrics["n_classes"] == 6 and "clutter" in metrics["classes"]
    correct = sum(row["label"] == row["prediction"] for row in scored)
    assert metrics["accuracy"] == pytest.approx(correct / len(scored))
    for name, stats in metrics["per_class"].items():
        assert stats["support"] == sum(row["label"] == name for row in scored)
        predicted = [row for row in scored if row["prediction"] == name]
        hits = sum(row["label"] == name for row in predicted)
        assert stats["precision"] == pytest.approx(hits / len(predicted) if predicted else 0.0)
    for key in ("model", "strategy", "n_images", "accuracy", "macro_avg", "weighted_avg", "per_class", "invalid",
                "images_per_s", "peak_gpu_gb"):
        assert key in metrics
    assert metrics["peak_gpu_gb"] is None and metrics["images_per_s"] > 0
    label_map = json.loads((reference / "label_map.json").read_text())
    assert set(label_map) == set(metrics["classes"])


def test_kill_nine_at_several_points_resumes_exactly(tree: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    for target in (0, 4, 13, 25):
        process = subprocess.Popen(command(tree, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while stored_rows(out, "predictions") < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if target == 0:
            time.sleep(1.0)  # killed while still importing or loading the model
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    done = subprocess.run(command(tree, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert predictions(out) == predictions(reference)
    with sqlite3.connect(out / "run.sqlite") as db:
        questions = db.execute("SELECT COUNT(*), COUNT(DISTINCT image) FROM questions").fetchone()
        sessions = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    assert questions[0] == questions[1] == 30
    assert sessions >= 2
    again = subprocess.run(command(tree, out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and predictions(out) == predictions(reference)


def test_a_different_spec_on_the_same_folder_is_refused(tree: Path, reference: Path) -> None:
    done = subprocess.run(command(tree, reference, "--per-class", "2"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "holds a different run" in done.stderr and "per_class: None → 2" in done.stderr
