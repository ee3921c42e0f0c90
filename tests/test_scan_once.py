"""Scan once: a sweep opens its dataset once for its size check and all its points; a finished
run run again, or a finished sweep, opens it not at all (the sampled list is in the store); the
HTML report's thumbnails load by the stored image ids without scanning the tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from report_runs import Runs, cli, real_runs, sweep_args  # noqa: E402

from classbench.cli import app  # noqa: E402
from classbench.datasets import folder as folder_source  # noqa: E402


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every scan of a folder tree from here on, by its root."""
    seen: list[Path] = []
    real = folder_source.open_folder

    def counting(root: Path, *args, **kwargs):
        seen.append(root)
        return real(root, *args, **kwargs)

    monkeypatch.setattr(folder_source, "open_folder", counting)
    return seen


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return real_runs(tmp_path_factory)


def test_a_sweep_scans_once_and_a_finished_sweep_not_at_all(runs: Runs, tmp_path: Path, scans: list[Path]) -> None:
    out = tmp_path / "sweep"
    first = cli(*sweep_args(runs.dataset, out, sizes="2,3,4"))
    assert len(scans) == 1
    again = CliRunner().invoke(app, sweep_args(runs.dataset, out, sizes="2,3,4"))
    assert again.exit_code == 0, again.output
    assert len(scans) == 1
    table = lambda text: [line for line in text.splitlines() if line.startswith("| efficientnet-lite0")]  # noqa: E731
    assert table(again.output) == table(first)


def test_a_finished_run_resumes_without_its_dataset(runs: Runs, tmp_path: Path, scans: list[Path]) -> None:
    """The dataset is moved away: a finished run still resumes (nothing to do), reads no tree and
    reports the same table; an unfinished one still needs its data and says so."""
    dataset = tmp_path / "clothes"
    shutil.copytree(runs.dataset, dataset)
    args = ["run", "--dataset", str(dataset), "--model", "efficientnet-lite0", "--classes", "2", "--per-class", "2",
            "--batch-size", "8", "--no-progress", "--out"]
    first = cli(*args, str(tmp_path / "run"))
    assert len(scans) == 1
    shutil.rmtree(dataset)
    again = CliRunner().invoke(app, [*args, str(tmp_path / "run")])
    assert again.exit_code == 0, again.output
    assert "resuming" in again.output and "4 of 4 images done" in again.output
    assert len(scans) == 1
    row = lambda text: [line for line in text.splitlines() if line.startswith("| efficientnet-lite0")]  # noqa: E731
    assert row(again.output) == row(first)
    missing = CliRunner().invoke(app, [*args, str(tmp_path / "other")])
    assert missing.exit_code != 0 and "no such file or folder" in str(missing.exception)


def test_the_report_draws_thumbnails_without_scanning(runs: Runs, tmp_path: Path, scans: list[Path]) -> None:
    from classbench.report import html as html_report

    (tmp_path / "plots").mkdir()
    page = html_report.render([runs.points[5], runs.other], tmp_path / "plots")
    assert scans == []
    assert page.count('<img src="data:image/png;base64,') > 0 and '<div class="missing">' not in page
