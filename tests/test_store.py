"""The store: resume checks, question-level bookkeeping, upgrade-safe identities."""

from __future__ import annotations

from pathlib import Path

import pytest

from classbench.datasets.base import Sample
from classbench.errors import UserError
from classbench.spec import RunSpec, identity_differences
from classbench.store import Prediction, Question, Store

SAMPLES = [Sample("a/1.jpg", "a"), Sample("b/1.jpg", "b")]


def fresh(tmp_path: Path) -> tuple[Store, dict]:
    identity = RunSpec.from_flat(dataset=str(tmp_path), model="efficientnet-lite0").identity()
    store = Store(tmp_path / "run.sqlite")
    assert store.begin_or_resume(identity, SAMPLES, {"classes": ["a", "b"]}) is False
    return store, identity


def test_resume_accepts_same_spec_and_refuses_other_data(tmp_path: Path) -> None:
    store, identity = fresh(tmp_path)
    assert store.begin_or_resume(identity, SAMPLES, {}) is True
    with pytest.raises(UserError, match="images changed"):
        store.begin_or_resume(identity, SAMPLES[:1], {})
    with pytest.raises(UserError, match="sample.seed: 0 → 5"):
        store.begin_or_resume({**identity, "sample": {**identity["sample"], "seed": 5}}, SAMPLES, {})


def test_a_setting_added_later_with_its_default_is_no_difference(tmp_path: Path) -> None:
    current = RunSpec.from_flat(dataset=str(tmp_path), model="efficientnet-lite0").identity()
    strategy = current["strategy"]
    older = {**current, "strategy": {**strategy, "settings": {k: v for k, v in strategy["settings"].items()
                                                              if k != "map_threshold"}}}
    assert identity_differences(older, current) == []
    changed = {**current, "strategy": {**strategy, "settings": {**strategy["settings"], "map_threshold": 0.9}}}
    assert identity_differences(older, changed) == ["strategy.settings.map_threshold: 0.5 → 0.9"]


def test_failed_questions_are_asked_again_and_replaced(tmp_path: Path) -> None:
    store, _ = fresh(tmp_path)
    store.record("a/1.jpg", [Question("q0", answer="cat"), Question("q1", error="timeout")], None)
    assert set(store.questions_for(["a/1.jpg"])["a/1.jpg"]) == {"q0"}
    store.record("a/1.jpg", [Question("q1", answer="dog")],
                 Prediction("a/1.jpg", "a", "a", "ok"))
    rows = list(store.all_questions())
    assert [(image, q.key, q.answer, q.error) for image, q in rows] == [
        ("a/1.jpg", "q0", "cat", None), ("a/1.jpg", "q1", "dog", None)]
    assert store.finished_images() == {"a/1.jpg"}


def test_model_failures_are_not_finished_but_unreadable_images_are(tmp_path: Path) -> None:
    store, _ = fresh(tmp_path)
    store.record("a/1.jpg", [], Prediction("a/1.jpg", "a", None, "failed", "unreadable image: x"))
    store.record("b/1.jpg", [], Prediction("b/1.jpg", "b", None, "failed", "model error: OOM"))
    assert store.finished_images() == {"a/1.jpg"}


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    store, _ = fresh(tmp_path)
    with pytest.raises(RuntimeError):
        with store.batch():
            store.record("a/1.jpg", [Question("q")], Prediction("a/1.jpg", "a", "a", "ok"))
            raise RuntimeError("killed halfway")
    assert store.finished_images() == set() and list(store.all_questions()) == []
