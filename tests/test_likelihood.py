"""Likelihood scoring over a shared prefix equals one full forward per candidate on every tiny
architecture; the strategy predicts a rigged model's class end to end, stores what metrics need
(per-class probabilities, so top-k and ECE) and resumes without asking again; binary over shared
prefixes gives exactly the round-by-round answers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from vlm_fixtures import (arch_params, backend, image_tree, model_folder, questions, read_predictions, run,  # noqa: E402
                          strategy_at)

from classbench.batching import answers_at  # noqa: E402
from classbench.datasets import Sample, open_dataset  # noqa: E402
from classbench.calibration import expected_calibration_error  # noqa: E402
from classbench.models.base import ScoreRequest  # noqa: E402
from classbench.models import hf_prefix  # noqa: E402
from classbench.models.hf_prefix import answer_ids  # noqa: E402
from classbench.records import Prediction  # noqa: E402
from classbench.strategies.binary import Binary  # noqa: E402
from classbench.strategies.binary_shared import SharedPrefixBinary  # noqa: E402
from tinymodels.full_forward import score_full_forward  # noqa: E402
from tinymodels.tiny_models import Rig, make_rgb_images  # noqa: E402

CANDIDATES = ("cat", "dog", "car", "clutter", "teddy bear", "zebra crossing")
"""One-token names, a two-word name, and one the tiny vocabulary splits into several tokens."""
PROMPT = "Question: What type of object is in this photo? Answer:"


def _images(n: int) -> list:
    sizes = [(64, 48), (40, 56), (90, 30)]
    return [image.resize(sizes[i % len(sizes)]) for i, image in enumerate(make_rgb_images(n, seed=7))]


@pytest.mark.parametrize("arch", arch_params())
def test_shared_prefix_scores_equal_one_full_forward_per_candidate(arch: str) -> None:
    model = backend(arch)
    assert "score" in model.capabilities
    for image in _images(2):
        request = ScoreRequest(image, PROMPT, CANDIDATES)
        shared, = model.score([request])
        reference = score_full_forward(model, request)
        np.testing.assert_allclose(shared.logprob, reference.logprob, rtol=0, atol=1e-4)
        assert int(np.argmax(shared.logprob)) == int(np.argmax(reference.logprob))
        assert list(shared.tokens) == list(reference.tokens)
        assert np.all(shared.logprob < 0) and np.all(np.isfinite(shared.logprob))
        assert shared.tokens[CANDIDATES.index("zebra crossing")] > shared.tokens[CANDIDATES.index("cat")]


def test_a_name_follows_the_prompt_as_generation_would_emit_it() -> None:
    """No space after the newline that ends Qwen's generation prompt; one after LLaVA's `ASSISTANT:`."""
    for arch, expected in (("qwen2_vl", "dog"), ("llava", " dog")):
        model = backend(arch)
        prompt_ids = model.prepare(_images(1), [PROMPT])["input_ids"][0].tolist()
        expected_ids = model.tokenizer.encode(expected, add_special_tokens=False)
        assert answer_ids(model.tokenizer, "dog", prompt_ids) == expected_ids


@pytest.mark.parametrize("arch, answer", [("qwen2_vl", "dog"), ("llava", " dog"), ("smolvlm", " dog")])
def test_a_rigged_model_s_likelihood_argmax_is_its_class(arch: str, answer: str, tmp_path: Path) -> None:
    if arch == "smolvlm":
        pytest.importorskip("num2words")
    folder = model_folder(arch, Rig(answer=answer))
    tree = image_tree(tmp_path / "tree")
    out = tmp_path / "run"
    metrics = run(tree, out, folder, "likelihood", background="clutter", batch_size=3)
    assert set(read_predictions(out).values()) == {"dog"}
    assert metrics["accuracy"] == 0.25 and metrics["invalid"] == 0
    assert metrics["ece"] == pytest.approx(expected_calibration_error(
        [Prediction(p["image"], p["label"], p["prediction"], "ok", detail={"scores": p["scores"]})
         for p in _stored_predictions(out)], {name: i for i, name in enumerate(metrics["classes"])}))
    assert metrics["strategy_summary"]["mean_confidence"] > 0.9
    rows = questions(out)
    assert len(rows) == 4 and {row[2] for row in rows} == {"score"}


def test_predictions_equal_an_independent_per_candidate_computation_and_resume_asks_nothing(tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "tree", per_class=2)
    out = tmp_path / "run"
    metrics = run(tree, out, model_folder("qwen2_vl"), "likelihood", background="clutter", batch_size=3)
    classes = metrics["classes"]
    model = backend("qwen2_vl")
    dataset = open_dataset(str(tree))
    expected = {}
    for sample in dataset.samples:
        reference = score_full_forward(model, ScoreRequest(dataset.load(sample), PROMPT, tuple(classes)))
        expected[sample.id] = classes[int(np.argmax(reference.logprob))]
    assert read_predictions(out) == expected
    for prediction in _stored_predictions(out):
        assert len(prediction["scores"]) == len(classes) and sum(prediction["scores"]) == pytest.approx(1, abs=1e-4)
    before = questions(out)
    run(tree, out, model_folder("qwen2_vl"), "likelihood", background="clutter", batch_size=2)
    assert questions(out) == before, "a resumed run re-asks nothing"
    assert read_predictions(out) == expected


def test_mean_per_token_and_calibration_change_the_score_as_documented(tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "tree")
    plain = run(tree, tmp_path / "plain", model_folder("llava"), "likelihood")
    mean = run(tree, tmp_path / "mean", model_folder("llava"), "likelihood", score_norm="mean", calibrate=True)
    assert plain["spec"]["strategy"]["settings"]["score_norm"] == "sum"
    assert mean["spec"]["strategy"]["settings"]["calibrate"] is True
    db = sqlite3.connect(tmp_path / "mean" / "run.sqlite")
    blank = np.array(json.loads(db.execute("SELECT value FROM meta WHERE key = 'strategy'").fetchone()[0])
                     ["calibration"]["logprob"])
    db.close()
    detail = detail_of(tmp_path / "mean")
    for prediction in _stored_predictions(tmp_path / "mean"):
        stored = detail[prediction["image"]]
        score = (np.array(stored["logprob"]) - blank) / np.array(stored["tokens"])
        expected = np.exp(score - score.max()) / np.exp(score - score.max()).sum()
        np.testing.assert_allclose(prediction["scores"], expected, atol=1e-5)
    for prediction in _stored_predictions(tmp_path / "plain"):
        logprob = np.array(detail_of(tmp_path / "plain")[prediction["image"]]["logprob"])
        assert plain["classes"][int(np.argmax(prediction["scores"]))] == plain["classes"][int(np.argmax(logprob))]


@pytest.mark.parametrize("arch", arch_params(("qwen2_vl", "llava_next", "smolvlm", "paligemma")))
def test_binary_over_shared_prefixes_equals_round_by_round_binary(arch: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Random weights (answers are junk, so every class is asked) and a model that says yes to one
    class (so asking stops part-way); images of several sizes, so prefixes are padded; questions in
    one wave and (with WAVE_ROWS 1) in waves of half the questions left."""
    samples = [(Sample(f"img{i}.png", "cat"), image) for i, image in enumerate(_images(3))]
    classes = ["cat", "dog", "car", "teddy bear", "clutter"]
    for model in (backend(arch), backend(arch, Rig(yes_if="car"))):
        sequential = answers_at(strategy_at(Binary, model, classes, max_new_tokens=3), samples, 8)
        for wave_rows in (hf_prefix.WAVE_ROWS, 1):
            monkeypatch.setattr(hf_prefix, "WAVE_ROWS", wave_rows)
            shared = answers_at(strategy_at(SharedPrefixBinary, model, classes, max_new_tokens=3), samples, 8)
            assert shared == sequential
    assert sum(key != "(prediction)" for _, key in shared) < 4 * len(samples), "the rig stops before the end"
    shares = hf_prefix._plan(backend(arch), [(image, ["Is the cat here?", "Is the dog here?"]) for _, image in samples])
    assert (shares is not None) == backend(arch).adapter.shared_prefix, "prefix-LMs (PaliGemma) ask plainly"


def test_expected_calibration_error_on_a_hand_computed_case() -> None:
    index = {"a": 0, "b": 1}

    def prediction(label: str, scores: list[float]) -> Prediction:
        return Prediction("x", label, None, "ok", detail={"scores": scores})

    # Two images at confidence 0.9 (one right) and one at 0.6 (right): |0.5-0.9|*2/3 + |1-0.6|*1/3.
    scored = [prediction("a", [0.9, 0.1]), prediction("b", [0.9, 0.1]), prediction("b", [0.4, 0.6])]
    assert expected_calibration_error(scored, index) == pytest.approx(0.4 * 2 / 3 + 0.4 / 3)
    assert expected_calibration_error([prediction("a", [1.0, 0.0])], index) == 0.0
    assert expected_calibration_error([Prediction("x", "a", "a", "ok")], index) is None


def _stored_predictions(out: Path) -> list[dict]:
    db = sqlite3.connect(out / "run.sqlite")
    try:
        rows = db.execute("SELECT image, label, prediction, detail FROM predictions").fetchall()
    finally:
        db.close()
    return [{"image": image, "label": label, "prediction": prediction, **json.loads(detail)}
            for image, label, prediction, detail in rows]


def detail_of(out: Path) -> dict[str, dict]:
    return {image: json.loads(d) for _, image, _, _, _, d, _, _ in questions(out)}
