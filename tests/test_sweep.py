"""A class-count sweep must give, at every point, exactly what `classbench run` gives at that size,
on nested class subsets with the same images per class, and resume without asking again."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from report_runs import PER_CLASS, SIZES, Runs, cli, real_runs, sweep_args  # noqa: E402

from classbench import sweep as sweeping  # noqa: E402
from classbench.cli import app  # noqa: E402
from classbench.errors import UserError  # noqa: E402
from classbench.spec import RunSpec  # noqa: E402
from classbench.store import Store  # noqa: E402


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return real_runs(tmp_path_factory)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [{key: value for key, value in row.items() if key != "latency_s"} for row in csv.DictReader(handle)]


def _store(folder: Path) -> Store:
    return Store.open_existing(folder)


def test_each_point_matches_a_separate_run(runs: Runs, tmp_path: Path) -> None:
    table = {int(row["n_classes"]): row for row in csv.DictReader((runs.sweep / "sweep.csv").open())}
    for size in SIZES:
        alone = tmp_path / f"alone-{size}"
        cli("run", "--dataset", str(runs.dataset), "--model", "efficientnet-lite0", "--classes", str(size),
            "--per-class", str(PER_CLASS), "--batch-size", "8", "--out", str(alone), "--no-progress")
        point = runs.points[size]
        assert _rows(point / "predictions.csv") == _rows(alone / "predictions.csv")
        swept, separate = (json.loads((folder / "metrics.json").read_text()) for folder in (point, alone))
        for key in ("accuracy", "accuracy_ci95", "macro_avg", "macro_f1_ci95", "per_class", "n_images", "classes"):
            assert swept[key] == separate[key], key
        assert float(table[size]["accuracy"]) == pytest.approx(separate["accuracy"], abs=1e-6)
        assert float(table[size]["macro_f1"]) == pytest.approx(separate["macro_avg"]["f1-score"], abs=1e-6)
        assert int(table[size]["n_images"]) == size * PER_CLASS


def test_points_are_nested_with_the_same_images_per_class(runs: Runs) -> None:
    small, large = (_store(runs.points[size]) for size in SIZES)
    try:
        assert set(small.meta("classes")) < set(large.meta("classes"))
        in_small = set(small.samples())
        assert in_small == {sample for sample in large.samples() if sample[1] in small.meta("classes")}
        assert small.meta("spec")["sample"]["classes"] == SIZES[0] and large.meta("spec")["sample"]["classes"] == SIZES[1]
    finally:
        small.close()
        large.close()


def test_table_has_the_published_shape(runs: Runs) -> None:
    text = (runs.sweep / "sweep.md").read_text()
    assert "| model | strategy | 3 | 5 |" in text
    accuracies = [json.loads((runs.points[size] / "metrics.json").read_text())["accuracy"] for size in SIZES]
    assert f"| efficientnet-lite0 | direct | {accuracies[0]:.3f} | {accuracies[1]:.3f} |" in text
    assert "macro avg F1 against the number of classes, with 95% bootstrap intervals" in text


def test_the_same_sweep_again_asks_nothing(runs: Runs) -> None:
    before = {size: len(_sessions(runs.points[size])) for size in SIZES}
    result = CliRunner().invoke(app, sweep_args(runs.dataset, runs.sweep))
    assert result.exit_code == 0, result.output
    assert f"resuming {runs.points[SIZES[0]]}: {SIZES[0] * PER_CLASS} of {SIZES[0] * PER_CLASS} images done" in result.output
    assert {size: len(_sessions(runs.points[size])) for size in SIZES} == before


def _sessions(folder: Path) -> list[dict]:
    store = _store(folder)
    try:
        return store.sessions()
    finally:
        store.close()


def test_an_impossible_class_count_fails_before_any_point_runs(runs: Runs, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, sweep_args(runs.dataset, out, sizes="3,99"))
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError) and "N=99" in str(result.exception)
    assert not out.exists()


def test_sweep_takes_every_setting_of_run() -> None:
    from typer.main import get_command

    group = get_command(app)
    run_options = {param.name for param in group.commands["run"].params}
    sweep_options = {param.name for param in group.commands["sweep"].params}
    assert run_options <= sweep_options


def test_plan_lays_out_one_folder_per_model_strategy_and_size(tmp_path: Path) -> None:
    bases = [RunSpec.from_flat(dataset=str(tmp_path), model=model, strategy=strategy)
             for model in ("hf:Qwen/Qwen2-VL-7B-Instruct", "efficientnet-lite0") for strategy in ("closed-set", "binary")]
    points = sweeping.plan(bases, [10, 25], tmp_path / "out")
    assert [(p.spec.model.name, p.spec.strategy.name, p.spec.sample.classes) for p in points][:3] == [
        ("hf:Qwen/Qwen2-VL-7B-Instruct", "closed-set", 10), ("hf:Qwen/Qwen2-VL-7B-Instruct", "closed-set", 25),
        ("hf:Qwen/Qwen2-VL-7B-Instruct", "binary", 10)]
    assert points[1].folder == tmp_path / "out" / "hf-Qwen-Qwen2-VL-7B-Instruct-closed-set" / "n25"
    assert len({p.folder for p in points}) == 8


@pytest.mark.parametrize("text, sizes", [("10,25,50", [10, 25, 50]), ("50, 10,10", [10, 50]), ("7", [7])])
def test_class_counts_parse(text: str, sizes: list[int]) -> None:
    assert sweeping.parse_sizes(text) == sizes


@pytest.mark.parametrize("text", ["", "10,x", "0,5", "-3"])
def test_bad_class_counts_say_what_to_write(text: str) -> None:
    with pytest.raises(UserError, match="--classes"):
        sweeping.parse_sizes(text)


def test_the_points_of_one_model_share_one_load(runs: Runs) -> None:
    """The model is loaded for the first point only; the later points reuse it (load_s is 0)."""
    loads = []
    for size in SIZES:
        store = _store(runs.points[size])
        try:
            loads.append(store.sessions()[0]["load_s"])
        finally:
            store.close()
    assert loads[0] > 0 and all(load == 0 for load in loads[1:])
