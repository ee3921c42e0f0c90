"""Likelihood and binary over an OpenAI-compatible server that sends first-token log-probabilities,
through the real `openai:` backend and the real command line.

The server is `logprob_server.LogprobServer`, a scripted stand-in: no server that returns
`top_logprobs` (the OpenAI API, vLLM) can run offline here, and `transformers serve` ignores them
(its refusal is tested in test_openai_backend.py). Each image's reply is fixed by its colour, so
every score below is computed by hand from the table.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp")

from logprob_server import LogprobServer, Reply  # noqa: E402

MODEL = "tiny-logprobs"
CLASSES = ["bird", "car", "cat", "dog", "tennis ball", "tennis racket"]
REPLIES: list[tuple[str, str, str, dict[str, float]]] = [
    # folder, generated text, its first token, the likely first tokens
    ("cat", "cat", "cat", {"cat": -0.1, " cat": -2.6, "dog": -3.0, "Cat": -4.0}),
    ("cat", "Cats", "C", {"C": -0.2, "cat": -1.9, "car": -2.2}),
    ("dog", "A dog", "A", {"A": -0.2, "cat": -1.0, "Dog": -1.8}),
    ("dog", "dog", "dog", {"dog": -0.05, "cat": -3.5}),
    ("tennis_ball", "tennis ball", "tennis", {"tennis": -0.05, " Tennis": -3.5, "cat": -4.0}),
    ("tennis_ball", "tennis ball", "ten", {"ten": -0.1, "tennis": -2.5}),
    ("tennis_racket", "tennis", "tennis", {"tennis": -0.1, "car": -3.0}),
    ("tennis_racket", "tennis racket", " tennis", {" tennis": -0.3, "tennis": -1.5}),
    ("bird", "I cannot tell.", "I", {"I": -0.1, "Sorry": -2.0}),
    ("bird", "bird", "bird", {"bird": -0.2, "Bird": -2.0, "birds": -3.0, "cat": -4.0}),
    ("car", "car", "car", {"car": -0.1, "cat": -2.5}),
    ("car", "Car.", "Car", {"Car": -0.3, "car": -1.5, "cart": -3.0}),
]
PREDICTED = ["cat", "cat", "dog", "dog", "tennis ball", "tennis ball", None, "tennis racket", None, "bird",
             "car", "car"]
YES = {"Yes": -0.05, "yes": -4.0, "No": -3.2}
NO = {"No": -0.1, "no": -3.0, "Yes": -2.4}


def _colour(index: int) -> tuple[int, int, int]:
    return (20 * index, 100, 200)


def _respond(colour: tuple[int, int, int], prompt: str) -> Reply:
    index = colour[0] // 20
    folder, text, first, top = REPLIES[index]
    asked = re.search(r"Is the (.+) in this photo", prompt)
    if asked:
        own = asked.group(1) == folder.replace("_", " ")
        return ("Yes", "Yes", YES) if own else ("No", "No", NO)
    return text, first, top


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    for index, (folder, *_) in enumerate(REPLIES):
        (root / folder).mkdir(exist_ok=True)
        Image.new("RGB", (16, 12), _colour(index)).save(root / folder / f"{index:02d}.png")
    return root


@pytest.fixture
def server() -> Iterator[LogprobServer]:
    with LogprobServer(MODEL, _respond) as running:
        yield running


def _run(tree: Path, server: LogprobServer, out: Path, strategy: str, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "classbench", "run", "--dataset", str(tree), "--model", f"openai:{MODEL}",
               "--strategy", strategy, "--base-url", server.url, "--out", str(out), "--no-progress", *extra]
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def _rows(out: Path, table: str, columns: str) -> list[tuple]:
    with sqlite3.connect(out / "run.sqlite") as db:
        return db.execute(f"SELECT {columns} FROM {table}").fetchall()


def _by_image(out: Path, table: str, columns: str) -> dict[str, tuple]:
    return {Path(image).stem: rest for image, *rest in _rows(out, table, f"image, {columns}")}


def _asked(out: Path) -> dict[str, Any]:
    """Each image's question as asked, read through the store (which packs class lists and prompts)."""
    from classbench.store import Store

    store = Store.open_existing(out)
    try:
        return {Path(image).stem: question for image, question in store.all_questions()}
    finally:
        store.close()


def _scores(top: dict[str, float], counts: dict[str, list[str]]) -> list[float]:
    """Probabilities over CLASSES from which token counts for which classes (worked out by hand)."""
    mass = {name: sum(math.exp(top[token]) for token, names in counts.items() if name in names) for name in CLASSES}
    total = sum(mass.values())
    return [mass[name] / total for name in CLASSES]


def test_likelihood_scores_the_first_token_and_the_text_breaks_shared_token_ties(
        tree: Path, server: LogprobServer, tmp_path: Path) -> None:
    done = _run(tree, server, tmp_path, "likelihood")
    assert done.returncode == 0, done.stderr
    assert len(server.requests) == len(REPLIES)
    assert all(body["logprobs"] is True and body["top_logprobs"] == 20 for body in server.requests)

    predictions = _by_image(tmp_path, "predictions", "prediction, status, detail")
    assert [predictions[f"{i:02d}"][0] for i in range(len(REPLIES))] == PREDICTED
    details = {image: json.loads(detail) for image, (_, _, detail) in predictions.items()}
    expected = {
        # "C" is the generated token of "Cats": it counts for cat alone, although it begins car too.
        "01": _scores(REPLIES[1][3], {"C": ["cat"], "cat": ["cat"], "car": ["car"]}),
        # "A" of "A dog" counts for dog, which beats the likelier listed "cat".
        "02": _scores(REPLIES[2][3], {"A": ["dog"], "cat": ["cat"], "Dog": ["dog"]}),
        # "tennis" begins both tennis classes; the text "tennis ball" gives it to the ball alone.
        "04": _scores(REPLIES[4][3], {"tennis": ["tennis ball"], " Tennis": ["tennis ball", "tennis racket"],
                                      "cat": ["cat"]}),
        "05": _scores(REPLIES[5][3], {"ten": ["tennis ball"], "tennis": ["tennis ball", "tennis racket"]}),
        # The text "tennis" names neither, so the tie stands: invalid, never guessed.
        "06": _scores(REPLIES[6][3], {"tennis": ["tennis ball", "tennis racket"], "car": ["car"]}),
        "11": _scores(REPLIES[11][3], {"Car": ["car"], "car": ["car"]}),
    }
    for image, scores in expected.items():
        assert details[image]["scores"] == pytest.approx(scores, abs=1e-5), image
    assert details["06"]["outcome"] == "tie" and details["06"]["tied"] == ["tennis ball", "tennis racket"]
    assert predictions["06"][1] == "invalid" == predictions["08"][1]
    assert details["08"]["outcome"] == "no class reached" and details["08"]["scores"] == pytest.approx([1 / 6] * 6, abs=1e-5)

    asked = _asked(tmp_path)["02"]
    key, prompt, answer, label, detail = asked.key, asked.prompt, asked.answer, asked.label, asked.detail
    assert (key, answer, label) == ("score", "A dog", "dog")
    assert detail["first_token"] == "A" and detail["top_logprobs"] == REPLIES[2][3]
    assert prompt.startswith("Question: Answer this question in a single word") and "{classes}" not in prompt
    assert prompt.count(", ") == len(CLASSES) - 1 and sorted(detail["order"]) == CLASSES

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(10 / 12) and metrics["invalid"] == 2
    assert metrics["top5_accuracy"] is not None and metrics["ece"] is not None
    summary = metrics["strategy_summary"]
    assert summary["scoring"] == "first answer token" and summary["ties"] == 1 == summary["no_class_reached"]
    assert "1 tied and 1 reaching no class" in done.stdout

    again = _run(tree, server, tmp_path, "likelihood")
    assert again.returncode == 0, again.stderr
    assert len(server.requests) == len(REPLIES)


def test_the_class_order_is_closed_set_shuffle_0(tree: Path, server: LogprobServer, tmp_path: Path) -> None:
    assert _run(tree, server, tmp_path / "likelihood", "likelihood", "--option", "top_logprobs=2").returncode == 0
    assert all(body["top_logprobs"] == 2 for body in server.requests)
    closed = _run(tree, server, tmp_path / "closed", "closed-set")
    assert closed.returncode == 0, closed.stderr
    likelihood = {image: q.prompt for image, q in _asked(tmp_path / "likelihood").items()}
    assert likelihood == {image: q.prompt for image, q in _asked(tmp_path / "closed").items()}
    # With two tokens listed, "Cats"'s third-best "car" is gone, so cat has all the mass.
    detail = json.loads(_by_image(tmp_path / "likelihood", "predictions", "detail")["01"][0])
    assert detail["scores"] == [0, 0, 1, 0, 0, 0]


def test_binary_decides_on_the_text_and_records_p_yes(tree: Path, server: LogprobServer, tmp_path: Path) -> None:
    done = _run(tree, server, tmp_path, "binary", "--option", "top_logprobs=5")
    assert done.returncode == 0, done.stderr
    predictions = _by_image(tmp_path, "predictions", "label, prediction")
    assert all(label == prediction for label, prediction in predictions.values())

    p_yes = (math.exp(-0.05) + math.exp(-4.0)) / (math.exp(-0.05) + math.exp(-4.0) + math.exp(-3.2))
    p_no = math.exp(-2.4) / (math.exp(-0.1) + math.exp(-3.0) + math.exp(-2.4))
    details = [json.loads(detail) for detail, in _rows(tmp_path, "questions", "detail")]
    assert {d["reply"]: d["p_yes"] for d in details} == {"yes": pytest.approx(p_yes, abs=1e-5),
                                                         "no": pytest.approx(p_no, abs=1e-5)}
    means = json.loads((tmp_path / "metrics.json").read_text())["strategy_summary"]["mean_p_yes"]
    assert means == {"own_class": pytest.approx(p_yes, abs=1e-5), "other_classes": pytest.approx(p_no, abs=1e-5)}
    assert f"mean p(yes) {p_yes:.3f} for the image's class, {p_no:.3f} for others" in done.stdout


def test_settings_that_need_whole_name_scores_are_refused(tree: Path, server: LogprobServer, tmp_path: Path) -> None:
    done = _run(tree, server, tmp_path, "likelihood", "--calibrate")
    assert done.returncode == 2 and "--calibrate and --score-norm mean need" in done.stderr
    assert server.requests == []
