"""The probe's C: chosen by seeded stratified k-fold cross-validation on the shots, or fixed by --option C."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classbench import metrics, runner
from classbench.spec import RunSpec
from classbench.strategies.probe import C_GRID, _cross_validate
from clip_helpers import colour_tree, tiny_model_folder


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_tree(tmp_path_factory.mktemp("probe-c") / "tree", per_class=5)


def _run(tree: Path, out: Path, **settings) -> tuple[dict, dict]:
    spec = RunSpec.from_flat(dataset=str(tree), model=f"clip:{tiny_model_folder('clip')}", strategy="probe", batch_size=8,
                   **settings)
    runner.run(spec, out, log=lambda _: None)
    metrics.write_folder(out)
    return json.loads((out / "probe_split.json").read_text()), json.loads((out / "metrics.json").read_text())


def test_c_is_cross_validated_and_recorded(tree: Path, tmp_path: Path) -> None:
    split, summary = _run(tree, tmp_path / "cv", shots=3)
    choice = split["C"]
    assert choice["chosen_by"] == "cross-validation" and choice["folds"] == 3 and choice["grid"] == list(C_GRID)
    accuracy, loss = choice["mean_accuracy"], choice["mean_log_loss"]
    best = min(accuracy, key=lambda c: (-accuracy[c], loss[c], float(c)))
    assert choice["value"] == float(best)
    assert summary["strategy_summary"] == {"C": choice["value"], "C_chosen_by": "cross-validation", "n_shots": 9}


def test_option_c_fixes_it_and_one_shot_keeps_the_default(tree: Path, tmp_path: Path) -> None:
    split, summary = _run(tree, tmp_path / "fixed", shots=3, options={"C": 0.5})
    assert split["C"] == {"chosen_by": "--option C", "value": 0.5}
    assert summary["strategy_summary"]["C"] == 0.5
    split, summary = _run(tree, tmp_path / "one", shots=1)
    assert split["C"]["chosen_by"] == "default" and summary["strategy_summary"]["C"] == 1.0


def test_the_folds_are_seeded() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["a", "b", "c"]), 5)
    features = rng.normal(size=(15, 8)) + (labels == "a")[:, None] * 1.5
    first, second, other = (_cross_validate(features, labels, seed) for seed in (1, 1, 2))
    assert first == second and first[1]["folds"] == 5
    assert first[1]["mean_log_loss"] != other[1]["mean_log_loss"]
