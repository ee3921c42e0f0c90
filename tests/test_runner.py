"""The runner's bookkeeping when a model fails halfway through a chunk, and per-image latency."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from vlm_fixtures import image_tree, model_folder, read_predictions, run  # noqa: E402

from classbench import metrics, runner  # noqa: E402
from classbench.spec import RunSpec  # noqa: E402
from classbench.store import Store  # noqa: E402
from tinymodels.tiny_models import Rig  # noqa: E402


class CrashOnce(runner.ModelPool):
    """Hands out the real tiny model, wrapped so that its second `generate` call raises.

    Nothing real crashes on demand mid-chunk here (on a GPU it would be, say, an out-of-memory
    error), so this is the one stand-in: every answer still comes from the real model.
    """

    def get(self, spec: RunSpec) -> tuple[Any, float]:
        model, seconds = super().get(spec)
        real, calls = model.generate, [0]

        def generate(requests):
            calls[0] += 1
            if calls[0] == 2:
                raise RuntimeError("CUDA out of memory (simulated)")
            return real(requests)

        model.generate = generate
        return model, seconds


def test_a_crash_halfway_through_a_chunk_counts_each_image_once(tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "tree", per_class=2)
    # Chunks and calls of 3 questions: the second call crashes after the first 3 images are decided.
    spec = RunSpec.from_flat(dataset=str(tree), model=f"hf:{model_folder('llava', Rig(answer='cat'))}", strategy="closed-set",
                   shuffles=1, batch_size=3, device="cpu")
    models = CrashOnce()
    try:
        result = runner.run(spec, tmp_path / "out", log=lambda _: None, models=models)
    finally:
        models.close()
    assert result.asked == result.total == 8
    store = Store.open_existing(tmp_path / "out")
    try:
        metrics.write(store, tmp_path / "out")
    finally:
        store.close()
    predictions = read_predictions(tmp_path / "out")
    assert len(predictions) == 8 and set(predictions.values()) == {"cat"}
    with sqlite3.connect(tmp_path / "out" / "run.sqlite") as db:
        assert db.execute("SELECT SUM(n_images) FROM sessions").fetchone()[0] == 8
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT image) FROM questions").fetchone() == (8, 8)


@pytest.mark.parametrize("strategy", ["binary", "closed-set"])
def test_an_images_latency_is_the_sum_of_its_questions(tmp_path: Path, strategy: str) -> None:
    tree = image_tree(tmp_path / "tree", per_class=1)
    settings = {"shuffles": 2} if strategy == "closed-set" else {}
    run(tree, tmp_path / "out", model_folder("qwen2_vl", Rig(yes_if="car")), strategy, batch_size=4, **settings)
    with sqlite3.connect(tmp_path / "out" / "run.sqlite") as db:
        per_image = dict(db.execute("SELECT image, SUM(latency_s) FROM questions GROUP BY image"))
        recorded = dict(db.execute("SELECT image, latency_s FROM predictions"))
    assert per_image.keys() == recorded.keys()
    for image, total in per_image.items():
        assert recorded[image] == pytest.approx(total, rel=1e-9)
