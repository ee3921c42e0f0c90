"""The command line as a user meets it: help, one-line errors, reports, the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trees import make_tree

CLASSBENCH = [sys.executable, "-m", "classbench"]


def classbench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLASSBENCH, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_help_answers_without_importing_torch() -> None:
    code = ("import sys; from classbench.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['run', '--help']); assert r.exit_code == 0, r.output; "
            "assert '--per-class' in r.output; "
            "heavy = [m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--nope"], "No such option"),
    (["run", "--dataset", "x"], "missing setting 'model'"),
    (["run", "--dataset", "/nowhere", "--model", "efficientnet-lite0"], "no such file or folder"),
    (["run", "--dataset", ".", "--model", "bogus:thing", "--classes", "0"], "bad value for 'classes'"),
    (["report", "/nowhere"], "no such run folder"),
    (["run", "--dataset", ".", "--model", "openai:m", "--base-url", "http://me:s3cret@gpu1:8000/v1"],
     "a user or password in the URL would be stored"),
])
def test_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    done = classbench(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "s3cret" not in done.stderr


def test_unknown_model_and_strategy_name_the_known_ones(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", folders=("001.a", "002.b"), per_class=1, background=False)
    done = classbench("run", "--dataset", str(tree), "--model", "bogus:thing", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "efficientnet-lite0" in done.stderr
    assert not (tmp_path / "o" / "run.sqlite").exists()  # a typo must not pin the folder to itself
    done = classbench("run", "--dataset", str(tree), "--model", "efficientnet-lite0", "--strategy", "psychic",
                      "--out", str(tmp_path / "o2"))
    assert done.returncode == 2 and "Known:" in done.stderr and "direct" in done.stderr


def test_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("dataset: .\nmodel: efficientnet-lite0\nshufle: 3\n")
    done = classbench("run", "--config", str(config))
    assert done.returncode == 2 and "unknown setting 'shufle'" in done.stderr


def test_config_run_report_and_csv(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", folders=("001.cat", "002.dog", "003.sandal"), per_class=2, background=False)
    config = tmp_path / "run.yaml"
    config.write_text(f"dataset: {tree}\nmodel: efficientnet-lite0\nper-class: 2\nout: {tmp_path / 'run'}\n"
                      "shuffles: 3\n")
    refused = classbench("run", "--config", str(config), "--no-progress")
    assert refused.returncode == 2 and "unknown setting 'shuffles'" in refused.stderr
    assert "--strategy direct (settings: label_map, map_threshold)" in refused.stderr
    config.write_text(f"dataset: {tree}\nmodel: efficientnet-lite0\nper-class: 2\nout: {tmp_path / 'run'}\n")
    done = classbench("run", "--config", str(config), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert f"run folder: {tmp_path / 'run'}" in done.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n_images"] == 6 and metrics["spec"]["sample"]["per_class"] == 2
    nested = tmp_path / "nested.yaml"
    nested.write_text(f"dataset: {{source: {tree}}}\nsample: {{per_class: 2}}\n"
                      "model: {name: efficientnet-lite0}\nstrategy: {name: direct, settings: {map_threshold: 0.5}}\n"
                      "runtime: {batch_size: 3}\n")
    again = classbench("run", "--config", str(nested), "--out", str(tmp_path / "run"), "--no-progress")
    assert again.returncode == 0 and "resuming" in again.stderr, "the nested form is the same run"
    report = classbench("report", str(tmp_path / "run"))
    lines = report.stdout.strip().splitlines()
    assert lines[0] == "| model | strategy | macro avg F1 | weighted avg F1 | accuracy | GPU (GB) | Speed (it/s) |"
    assert lines[2].startswith("| efficientnet-lite0 | direct |") and "| N/A |" in lines[2]
    as_csv = classbench("report", "--csv", str(tmp_path / "run")).stdout.splitlines()
    assert as_csv[0].startswith("model,strategy,macro avg F1") and len(as_csv) == 2


def test_datasets_and_models_commands(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", folders=("001.ak47", "253.faces-easy-101"), per_class=2, background=True)
    (tree / "001.ak47" / "x.txt").write_text("")
    shown = classbench("datasets", str(tree)).stdout
    assert "6 images in 3 classes" in shown and "faces easy" in shown and "skipped: 1 non-image file" in shown
    listed = classbench("models").stdout
    assert "efficientnet-lite0" in listed and "direct" in listed


@pytest.mark.slow
def test_demo_prints_the_leaderboard(tmp_path: Path) -> None:
    done = classbench("demo", "--out", str(tmp_path / "demo"), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "| efficientnet-lite0 | direct |" in done.stdout
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["n_images"] == 200 and metrics["n_classes"] == 10 and "T-shirt/top" in metrics["classes"]
    assert metrics["accuracy"] > 0.1  # chance is 0.1; a broken pipeline lands at or below it


def test_an_option_nothing_reads_is_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", folders=("001.a", "002.b"), per_class=1, background=False)
    done = classbench("run", "--dataset", str(tree), "--model", "efficientnet-lite0", "-o", "dtyp=fp16",
                      "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "unknown setting 'dtyp'" in done.stderr and "--model efficientnet-lite0 (settings: none)" in done.stderr
    done = classbench("run", "--dataset", str(tree), "--model", "efficientnet-lite0", "--strategy", "probe",
                      "-o", "C=0.5", "-o", "templates=x", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "unknown setting 'templates'" in done.stderr
    assert "--strategy probe (settings: C)" in done.stderr
    done = classbench("run", "--dataset", str(tree), "--model", "efficientnet-lite0", "--dtype", "bf16",
                      "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "unknown setting 'dtype'" in done.stderr, "a backend flag it ignores is an error"
    done = classbench("run", "--dataset", str(tree), "--model", "efficientnet-lite0", "--strategy", "probe",
                      "-o", "C=-1", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "bad value for 'C'" in done.stderr and "greater than 0" in done.stderr
