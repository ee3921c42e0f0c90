"""Tiny VLM folders, image trees and run helpers shared by the hf / closed-set / binary tests.

Folders and loaded backends are cached for the whole session in this module (not in fixtures),
so the three test files share them and each (architecture, rig) is built and loaded once.
"""

from __future__ import annotations

import atexit
import csv
import importlib.util
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tinymodels.tiny_models import ARCHITECTURES, Rig, build_tiny_vlm, make_rgb_images

CLASSES = ("cat", "dog", "car", "clutter")
FOLDERS = ("001.cat", "002.dog", "003.car", "004.clutter")
WORDS = ("cat", "dog", "car", "clutter", "teddy", "bear")

_root = Path(tempfile.mkdtemp(prefix="classbench-vlm-"))
atexit.register(shutil.rmtree, _root, True)
_folders: dict[tuple[str, Rig | None], Path] = {}
_backends: dict[tuple[str, Rig | None, tuple], Any] = {}


def arch_params(archs: Sequence[str] = ARCHITECTURES) -> list[Any]:
    """SmolVLM's processor imports num2words; without it that architecture is skipped."""
    missing = importlib.util.find_spec("num2words") is None
    return [pytest.param(arch, marks=pytest.mark.skipif(missing and arch == "smolvlm", reason="needs num2words"))
            for arch in archs]


def model_folder(arch: str, rig: Rig | None = None) -> Path:
    key = (arch, rig)
    if key not in _folders:
        name = f"{arch}-{rig.kind}-{rig.answer or rig.yes_if}" if rig else f"{arch}-random"
        _folders[key] = build_tiny_vlm(arch, _root / name, words=WORDS, rig=rig)
    return _folders[key]


def backend(arch: str, rig: Rig | None = None, **options: Any) -> Any:
    from classbench.models import load_model

    key = (arch, rig, tuple(sorted(options.items())))
    if key not in _backends:
        _backends[key] = load_model(f"hf:{model_folder(arch, rig)}", options, "cpu")
    return _backends[key]


def strategy_at(strategy: str | type, model: Any, classes: Sequence[str], background: str | None = "clutter",
                **settings: Any) -> Any:
    """A maker of the strategy at a batch size (for `batching.answers_at`): by registry name (the
    implementation the model can serve) or one implementation class."""
    from classbench import strategies
    from classbench.strategies.base import Context

    name = strategy if isinstance(strategy, str) else strategy.name
    values = strategies.settings_class(name)(**settings)

    def make(batch_size: int) -> Any:
        context = Context(classes=list(classes), background=background, seed=0, batch_size=batch_size)
        if isinstance(strategy, str):
            return strategies.build(name, model, values, context)
        return strategy(model, values, context)

    return make


def image_tree(folder: Path, per_class: int = 1, sizes: Sequence[tuple[int, int]] = ((64, 48), (40, 56))) -> Path:
    """A class-per-folder tree with a Caltech-style background folder; image sizes vary so that
    batched prompts really are padded."""
    images = make_rgb_images(per_class * len(FOLDERS), seed=11)
    for index, image in enumerate(images):
        target = folder / FOLDERS[index % len(FOLDERS)]
        target.mkdir(parents=True, exist_ok=True)
        image.resize(sizes[index % len(sizes)]).save(target / f"img{index}.png")
    return folder


def read_predictions(out: Path) -> dict[str, str]:
    with (out / "predictions.csv").open(encoding="utf-8") as handle:
        return {row["image"]: row["prediction"] for row in csv.DictReader(handle)}


def read_metrics(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def questions(out: Path) -> list[tuple]:
    """(id, image, key, answer, label, detail, error, created) rows of the run's store, the detail as
    JSON text; read through the store, which keeps class-name lists packed."""
    from classbench.store import Store

    db = sqlite3.connect(out / "run.sqlite")
    store = Store.open_existing(out)
    try:
        rows = list(db.execute("SELECT id, created FROM questions ORDER BY id"))
        asked = list(store.all_questions())
    finally:
        db.close()
        store.close()
    return [(row_id, image, q.key, q.answer, q.label, None if q.detail is None else json.dumps(q.detail), q.error,
             created) for (row_id, created), (image, q) in zip(rows, asked)]


def accuracy_from_csv(out: Path) -> float:
    with (out / "predictions.csv").open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] != "failed"]
    return sum(row["label"] == row["prediction"] for row in rows) / len(rows)


def run(tree: Path, out: Path, model: Path, strategy: str, **settings: Any) -> dict[str, Any]:
    """One run through the runner and metrics, as the CLI does it, in this process."""
    from classbench import metrics, runner
    from classbench.spec import RunSpec
    from classbench.store import Store

    spec = RunSpec.from_flat(dataset=str(tree), model=f"hf:{model}", strategy=strategy, device="cpu", **settings)
    runner.run(spec, out, log=lambda message: None)
    store = Store.open_existing(out)
    try:
        return metrics.write(store, out)
    finally:
        store.close()
