"""The binary strategy end to end on rigged tiny models: it stops at the first yes, never asks
about the background, answers background (or `(none)`) after the last no, counts invalid
replies, and resumes between rounds without asking a question twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from vlm_fixtures import (  # noqa: E402
    accuracy_from_csv,
    arch_params,
    image_tree,
    model_folder,
    questions,
    read_metrics,
    read_predictions,
    run,
)

from classbench.strategies.asking import seeded_order  # noqa: E402
from tinymodels.tiny_models import Rig  # noqa: E402

ASKABLE = ["cat", "dog", "car"]


def _asked(out: Path) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for _, image, key, answer, _, detail, _, _ in questions(out):
        found.setdefault(image, []).append((key.removeprefix("ask:"), json.loads(detail)["reply"]))
    return found


@pytest.mark.parametrize("arch", arch_params(("llava", "qwen2_vl", "idefics3")))
def test_a_model_that_says_yes_only_to_dog_stops_at_the_dog_question(arch: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    metrics = run(image_tree(tmp_path / "tree"), out, model_folder(arch, Rig(yes_if="dog")), "binary",
                  background="clutter", batch_size=8, seed=3)
    assert set(read_predictions(out).values()) == {"dog"}
    for image, asked in _asked(out).items():
        order = seeded_order([c for c in metrics["classes"] if c != "clutter"], 3, image, "binary")
        assert [name for name, _ in asked] == order[: order.index("dog") + 1]
        assert [reply for _, reply in asked] == ["no"] * order.index("dog") + ["yes"]
    assert metrics["accuracy"] == pytest.approx(accuracy_from_csv(out)) == 0.25
    summary = metrics["strategy_summary"]
    assert summary["images_with_no_yes"] == 0 and summary["invalid_yes_no"] == 0
    assert summary["questions"] == len(questions(out))
    assert summary["questions_per_image"] == pytest.approx(len(questions(out)) / 4)


def test_a_model_that_always_says_no_gives_background_after_n_minus_1_questions(tmp_path: Path) -> None:
    out = tmp_path / "run"
    metrics = run(image_tree(tmp_path / "tree"), out, model_folder("smolvlm", Rig(answer="no")), "binary",
                  background="clutter", batch_size=3)
    assert set(read_predictions(out).values()) == {"clutter"}
    asked = _asked(out)
    assert all(sorted(name for name, _ in a) == sorted(ASKABLE) for a in asked.values()), "clutter is never asked"
    assert metrics["accuracy"] == 0.25
    summary = metrics["strategy_summary"]
    assert summary["images_with_no_yes"] == 4 and summary["max_questions_per_image"] == 3


def test_without_a_background_no_yes_is_an_explicit_none(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tree = image_tree(tmp_path / "tree")
    metrics = run(tree, out, model_folder("llava", Rig(answer="no")), "binary", classes=3, seed=1,
                  binary_order="fixed")
    predictions = read_predictions(out)
    assert set(predictions.values()) == {"(none)"}
    classes = metrics["classes"]
    assert all([name for name, _ in a] == classes for a in _asked(out).values()), "fixed order: class-list order"
    assert metrics["accuracy"] == 0.0 and metrics["invalid"] == 0  # "(none)" is a decision, not an invalid answer
    assert all(row[-1] == sum(row) for row in metrics["confusion_matrix"]["matrix"])  # all in the "no class" column


def test_replies_that_are_neither_yes_nor_no_are_counted_invalid(tmp_path: Path) -> None:
    out = tmp_path / "run"
    metrics = run(image_tree(tmp_path / "tree"), out, model_folder("llava", Rig(answer="cat")), "binary",
                  background="clutter")
    assert set(read_predictions(out).values()) == {"clutter"}
    assert metrics["strategy_summary"]["invalid_yes_no"] == 4 * 3


def test_interrupted_between_rounds_resumes_without_asking_again(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from classbench import runner

    from classbench.datasets import open_dataset, select

    tree = image_tree(tmp_path / "tree")
    order = [c for c in select(open_dataset(str(tree)), None, None, 0, "clutter").classes if c != "clutter"]
    model = model_folder("llava", Rig(yes_if=order[-1]))
    settings = dict(background="clutter", batch_size=2, binary_order="fixed")
    original, writes = runner._write, {"n": 0}

    def write(store, records, *args):
        result = original(store, records, *args)
        writes["n"] += bool(records)
        if writes["n"] == 3:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(runner, "_write", write)
    with pytest.raises(KeyboardInterrupt):
        run(tree, tmp_path / "resumed", model, "binary", **settings)
    partial = questions(tmp_path / "resumed")
    assert 0 < len(partial) < 4 * 3
    monkeypatch.setattr(runner, "_write", original)
    run(tree, tmp_path / "resumed", model, "binary", **settings)
    run(tree, tmp_path / "whole", model, "binary", **settings)

    final = questions(tmp_path / "resumed")
    assert final[: len(partial)] == partial
    assert _asked(tmp_path / "resumed") == _asked(tmp_path / "whole")
    assert len(final) == 4 * 3, "in fixed order, three questions reach the yes"
    assert read_predictions(tmp_path / "resumed") == read_predictions(tmp_path / "whole")
    assert read_metrics(tmp_path / "resumed")["strategy_summary"] == read_metrics(tmp_path / "whole")["strategy_summary"]
