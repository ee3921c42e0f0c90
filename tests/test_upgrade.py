"""Run folders written by classbench 0.1 (a flat spec) keep working: they report, and they resume.

`data/run-0.1-direct/run.sqlite` was written by classbench 0.1 (commit a48a4b4) with
`classbench run --dataset /tmp/fx/tree --model efficientnet-lite0 --per-class 2 --batch-size 2`
on the tree `make_tree(…, folders=CLASS_FOLDERS[:3], per_class=2, background=False)` builds.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from trees import CLASS_FOLDERS, make_tree

from classbench.spec import RunSpec, identity_differences, stored, upgrade

OLD = Path(__file__).parent / "data" / "run-0.1-direct"
OLD_TREE = "/tmp/fx/tree"


def _predictions(folder: Path) -> list[tuple[str, str, str, str]]:
    with (folder / "predictions.csv").open(newline="") as handle:
        return [(r["image"], r["label"], r["prediction"], r["status"]) for r in csv.DictReader(handle)]


def _moved(tmp_path: Path) -> tuple[Path, Path]:
    """The 0.1 folder with its dataset path pointed at a tree built here (the same images)."""
    tree = make_tree(tmp_path / "tree", folders=CLASS_FOLDERS[:3], per_class=2, background=False)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(OLD / "run.sqlite", run / "run.sqlite")
    db = sqlite3.connect(run / "run.sqlite")
    for key in ("identity", "spec"):
        value = json.loads(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])
        assert value["dataset"] == OLD_TREE and isinstance(value["model"], str), "a flat 0.1 record"
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps({**value, "dataset": str(tree)}), key))
    db.commit()
    db.close()
    return tree, run


def test_a_flat_spec_upgrades_to_the_nested_form() -> None:
    db = sqlite3.connect(OLD / "run.sqlite")
    flat = json.loads(db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()[0])
    db.close()
    nested = upgrade(flat)
    assert nested["dataset"] == {"source": OLD_TREE}
    assert nested["sample"] == {"per_class": 2, "seed": 0}
    assert nested["model"] == {"name": "efficientnet-lite0"}
    assert nested["strategy"] == {"name": "direct", "settings": {"map_threshold": 0.5}}
    assert stored(nested) == nested, "a nested record is read as it is"
    current = RunSpec.from_flat(dataset=OLD_TREE, model="efficientnet-lite0", per_class=2).identity()
    assert identity_differences(flat, current) == []
    other = RunSpec.from_flat(dataset=OLD_TREE, model="efficientnet-lite0", per_class=3).identity()
    assert identity_differences(flat, other) == ["sample.per_class: 2 → 3"]


def test_a_0_1_run_folder_reports_and_resumes_to_the_same_predictions(tmp_path: Path) -> None:
    tree, run = _moved(tmp_path)
    classbench = [sys.executable, "-m", "classbench"]
    report = subprocess.run([*classbench, "report", str(run)], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0 and "| efficientnet-lite0 | direct |" in report.stdout, report.stderr
    # As a kill -9 after the first chunk (batch size 2) leaves it: the later answers are gone.
    db = sqlite3.connect(run / "run.sqlite")
    kept = [row[0] for row in db.execute("SELECT image FROM samples ORDER BY pos LIMIT 2")]
    marks = ",".join("?" * len(kept))
    db.execute(f"DELETE FROM questions WHERE image NOT IN ({marks})", kept)
    db.execute(f"DELETE FROM predictions WHERE image NOT IN ({marks})", kept)
    db.commit()
    db.close()
    done = subprocess.run([*classbench, "run", "--dataset", str(tree), "--model", "efficientnet-lite0", "--per-class",
                           "2", "--batch-size", "2", "--out", str(run), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr and "2 of 6 images done" in done.stderr
    assert _predictions(run) == _predictions(OLD)
    refused = subprocess.run([*classbench, "run", "--dataset", str(tree), "--model", "efficientnet-lite0",
                              "--per-class", "1", "--out", str(run), "--no-progress"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "sample.per_class: 2 → 1" in refused.stderr


def test_upgrade_routes_each_flat_setting_to_its_component_and_drops_what_none_has() -> None:
    direct = upgrade({"dataset": "x", "model": "efficientnet-lite0", "shuffles": 3})
    assert "shuffles" not in direct["strategy"].get("settings", {}), "0.1 accepted it with no effect"
    vlm = upgrade({"dataset": "x", "model": "hf:org/m", "strategy": "closed-set", "shuffles": 3, "dtype": "bf16",
                   "options": {"min_pixels": 4}, "map_threshold": 0.5})
    assert vlm["strategy"]["settings"] == {"shuffles": 3}
    assert vlm["model"]["settings"] == {"dtype": "bf16", "min_pixels": 4}
