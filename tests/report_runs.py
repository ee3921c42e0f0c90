"""Real run folders for the sweep, report and comparison tests, built once per test session.

The shipped EfficientNet-Lite0 runs on a small class-per-folder tree of real Fashion-MNIST images
(copied from the demo data): a sweep at 3 and 5 classes, and a second 5-class run on the same
images with another label-map threshold (a pair to compare). Two classes carry names a report
must survive: an HTML injection and a label with dollar signs and an ampersand (matplotlib would
read `$…$` as mathtext).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from classbench.cli import app
from classbench.demo import demo_dataset

XSS = "<img src=x onerror=alert(1)>"
MONEY = "$5 & $10 bill"
SOURCES = {"01.trouser": "02.trouser", "02.sneaker": "08.sneaker", "03.bag": "09.bag", "04.trap": "04.dress",
           "05.money": "05.coat"}
ALIASES = {"04.trap": XSS, "05.money": MONEY}
PER_CLASS = 3
SIZES = (3, 5)


@dataclass(frozen=True)
class Runs:
    dataset: Path
    sweep: Path
    points: dict[int, Path]
    other: Path
    """5 classes, same images as the sweep's 5-class point, another --map-threshold."""


_built: dict[Path, Runs] = {}


def make_tree(root: Path) -> Path:
    demo = demo_dataset()
    for folder, source in SOURCES.items():
        (root / folder).mkdir(parents=True)
        for image in sorted((demo / source).glob("*.png"))[:PER_CLASS + 1]:
            shutil.copy(image, root / folder / image.name)
    lines = [f"{folder}: {label!r}" for folder, label in ALIASES.items()]
    (root / "labels.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def cli(*args: str) -> str:
    """Run a classbench command in this process; fail the test with its output if it fails."""
    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        pytest.fail(f"classbench {' '.join(args)} exited {result.exit_code}: {result.output}\n{result.exception!r}")
    return result.output


def sweep_args(dataset: Path, out: Path, sizes: str = ",".join(map(str, SIZES))) -> list[str]:
    return ["sweep", "--dataset", str(dataset), "--model", "efficientnet-lite0", "--classes", sizes,
            "--per-class", str(PER_CLASS), "--batch-size", "8", "--out", str(out), "--no-progress"]


def real_runs(factory: pytest.TempPathFactory) -> Runs:
    base = factory.getbasetemp()
    if base not in _built:
        root = factory.mktemp("report-runs")
        dataset = make_tree(root / "clothes")
        sweep = root / "sweep"
        cli(*sweep_args(dataset, sweep))
        points = {size: sweep / "efficientnet-lite0-direct" / f"n{size}" for size in SIZES}
        other = root / "threshold-0.3"
        cli("run", "--dataset", str(dataset), "--model", "efficientnet-lite0", "--classes", "5", "--per-class",
            str(PER_CLASS), "--map-threshold", "0.3", "--batch-size", "8", "--out", str(other), "--no-progress")
        _built[base] = Runs(dataset, sweep, points, other)
    return _built[base]
