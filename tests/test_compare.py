"""The paired comparison: the right discordant counts, McNemar's exact p-value, a paired bootstrap
interval that behaves, and refusals when two runs are not on the same images.

Stores are written directly with `Store`: the statistics need controlled right/wrong patterns,
which a real model cannot be asked for.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from classbench.cli import app
from classbench.datasets import Sample
from classbench.errors import UserError
from classbench.report import compare as comparing
from classbench.store import Prediction, Store

CLASSES = ["cat", "dog"]


def write_run(folder: Path, correct: list[bool], labels: list[str] | None = None, failed: set[int] = frozenset(),
              dataset: str | None = None) -> Path:
    folder.mkdir(parents=True)
    labels = labels or [CLASSES[i % 2] for i in range(len(correct))]
    samples = [Sample(f"img-{i:03d}.png", label) for i, label in enumerate(labels)]
    store = Store(folder / "run.sqlite")
    try:
        spec = {"model": {"name": folder.name}, "dataset": {"source": dataset}} if dataset else {"model": folder.name}
        store.begin_or_resume({"run": str(folder)}, samples, {"classes": CLASSES, "spec": spec})
        for i, (sample, right) in enumerate(zip(samples, correct)):
            other = CLASSES[1 - CLASSES.index(sample.label)]
            if i in failed:
                store.record(sample.id, [], Prediction(sample.id, sample.label, None, "failed", "unreadable image: x"))
            else:
                store.record(sample.id, [], Prediction(sample.id, sample.label, sample.label if right else other, "ok"))
    finally:
        store.close()
    return folder


def test_counts_and_exact_mcnemar(tmp_path: Path) -> None:
    # 10 images only A gets right, 2 only B, 8 both, 5 neither.
    a = [True] * 10 + [False] * 2 + [True] * 8 + [False] * 5
    b = [False] * 10 + [True] * 2 + [True] * 8 + [False] * 5
    result = comparing.compare(write_run(tmp_path / "a", a), write_run(tmp_path / "b", b))
    assert (result.a_only, result.b_only, result.n) == (10, 2, 25)
    assert result.accuracy_a == pytest.approx(18 / 25) and result.accuracy_b == pytest.approx(10 / 25)
    assert result.difference == pytest.approx(8 / 25)
    # two-sided exact binomial: 2 · P(X ≤ 2), X ~ Binomial(12, 1/2) = 2 · (1 + 12 + 66) / 4096
    assert result.p_value == pytest.approx(2 * 79 / 4096)
    assert result.ci95[0] < result.difference < result.ci95[1]
    assert result.ci95[0] > 0


def test_identical_runs_differ_by_nothing(tmp_path: Path) -> None:
    pattern = [True, False, True, True, False, True]
    result = comparing.compare(write_run(tmp_path / "a", pattern), write_run(tmp_path / "b", pattern))
    assert result.difference == 0 and result.ci95 == (0.0, 0.0) and result.p_value == 1.0


def test_swapping_the_runs_negates_the_difference(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [True, True, False, True, False, True, True, False])
    b = write_run(tmp_path / "b", [False, True, True, False, False, True, False, False])
    forward, backward = comparing.compare(a, b), comparing.compare(b, a)
    assert forward.difference == -backward.difference
    assert forward.p_value == backward.p_value
    assert forward.ci95 == pytest.approx((-backward.ci95[1], -backward.ci95[0]))


def test_only_images_both_runs_scored_are_paired(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [True] * 6, failed={0})
    b = write_run(tmp_path / "b", [False] * 6, failed={5})
    result = comparing.compare(a, b)
    assert (result.n, result.n_a, result.n_b, result.a_only) == (4, 5, 5, 4)
    assert "compared on the 4 images both runs scored (A scored 5, B scored 5)" in comparing.markdown(result)


def test_runs_on_other_images_are_refused(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [True] * 4)
    b = write_run(tmp_path / "b", [True] * 4, labels=["dog", "cat", "cat", "dog"])
    with pytest.raises(UserError, match="different labels"):
        comparing.compare(a, b)
    empty = write_run(tmp_path / "empty", [])
    with pytest.raises(UserError, match="share no scored images"):
        comparing.compare(a, empty)


def test_a_folder_without_its_store_is_read_from_predictions_csv(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [True, True, False, True])
    copied = tmp_path / "copied"
    copied.mkdir()
    with (copied / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "prediction", "status", "latency_s", "error"])
        for i, label in enumerate(["cat", "dog", "cat", "dog"]):
            writer.writerow([f"img-{i:03d}.png", label, "cat", "ok", "", ""])
    result = comparing.compare(a, copied)
    assert (result.a_only, result.b_only) == (2, 1)


def test_report_compare_prints_the_comparison(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [True] * 9 + [False])
    b = write_run(tmp_path / "b", [False] * 5 + [True] * 5)
    result = CliRunner().invoke(app, ["report", "--compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "difference A − B: +0.400" in result.output
    # 2 · P(X ≤ 1), X ~ Binomial(6, 1/2) = 2 · 7 / 64
    assert "McNemar's exact test: p = 0.2188 (A right and B wrong on 5 images, A wrong and B right on 1)" in result.output


def test_runs_that_name_different_datasets_are_compared_with_a_note(tmp_path: Path) -> None:
    """Equal file names need not be equal images: the README promises that `--compare` says so."""
    pattern = [True, False, True, True]
    a = write_run(tmp_path / "a", pattern, dataset="photos/2023")
    same = write_run(tmp_path / "same", pattern, dataset="photos/2023")
    other = write_run(tmp_path / "other", pattern, dataset="photos/2024")
    assert comparing.compare(a, same).note is None
    note = comparing.compare(a, other).note
    assert note is not None and "photos/2023" in note and "photos/2024" in note
    result = CliRunner().invoke(app, ["report", "--compare", str(a), str(other)])
    assert result.exit_code == 0, result.output
    assert f"note: {note}" in result.output


def test_same_image_pairs_pick_runs_on_identical_images() -> None:
    one = {"x": ("cat", True), "y": ("dog", False)}
    same = {"x": ("cat", False), "y": ("dog", False)}
    other = {"x": ("cat", True)}
    assert comparing.same_image_pairs([one, other, same, {}]) == [(0, 2)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=300))
def test_paired_statistics_are_consistent(pairs: list[tuple[bool, bool]]) -> None:
    a = np.array([x for x, _ in pairs])
    b = np.array([y for _, y in pairs])
    difference, (low, high), a_only, b_only, p_value = comparing.paired(a, b)
    assert a_only == int(np.sum(a & ~b)) and b_only == int(np.sum(~a & b))
    assert difference == pytest.approx(a.mean() - b.mean())
    assert -1 <= low <= difference <= high <= 1
    assert 0 < p_value <= 1
