"""A new strategy is one module plus one registry line: flags, YAML, `-o`, `classbench models` and
the run's identity follow from its declared settings (the module is tests/plugins/confident.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from trees import make_tree

REGISTER = ("import sys; sys.path.insert(0, {tests!r}); "
            "from classbench import strategies; "
            "strategies.REGISTRY['confident'] = strategies.Entry('plugins.confident:ConfidentSettings', "
            "('plugins.confident:Confident',), 'the top label when the model is sure'); "
            "from classbench.cli import main; sys.argv[0] = 'classbench'; main()")


def classbench(*args: str) -> subprocess.CompletedProcess:
    code = REGISTER.format(tests=str(Path(__file__).parent))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_a_registered_strategy_gets_flags_yaml_and_a_listing(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", folders=("001.cat", "002.dog"), per_class=2, background=False)
    helped = classbench("run", "--help")
    assert "--min-probability" in helped.stdout and "confident: trust the top label" in helped.stdout
    listed = classbench("models")
    assert "strategy confident:" in listed.stdout and "--fallback" in listed.stdout
    done = classbench("run", "--dataset", str(tree), "--model", "efficientnet-lite0", "--strategy", "confident",
                      "--min-probability", "0.99", "--fallback", "dog", "--out", str(tmp_path / "a"),
                      "--no-progress")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["spec"]["strategy"] == {"name": "confident",
                                           "settings": {"min_probability": 0.99, "fallback": "dog"}}
    assert {row["prediction"] for row in _rows(tmp_path / "a")} == {"dog"}, "random photos are never that sure"
    config = tmp_path / "run.yaml"
    config.write_text(f"dataset: {{source: {tree}}}\nmodel: {{name: efficientnet-lite0}}\n"
                      "strategy: {name: confident, settings: {min_probability: 0.99, fallback: dog}}\n")
    again = classbench("run", "--config", str(config), "--out", str(tmp_path / "a"), "--no-progress")
    assert again.returncode == 0 and "resuming" in again.stderr, again.stderr
    other = classbench("run", "--config", str(config), "-o", "fallback=cat", "--out", str(tmp_path / "a"),
                       "--no-progress")
    assert other.returncode == 2 and "strategy.settings.fallback: 'dog' → 'cat'" in other.stderr
    wrong = classbench("run", "--dataset", str(tree), "--model", "efficientnet-lite0", "--strategy", "confident",
                       "--shuffles", "2", "--out", str(tmp_path / "b"))
    assert wrong.returncode == 2 and "(settings: min_probability, fallback)" in wrong.stderr


def _rows(folder: Path) -> list[dict[str, str]]:
    import csv

    with (folder / "predictions.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))
