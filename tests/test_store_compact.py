"""Compact questions: each prompt text kept once, class-name lists packed as indices, read back
exactly as asked; classbench 0.1 store files (schema 1) are upgraded in place and still read."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from classbench.datasets.base import Sample
from classbench.errors import UserError
from classbench.store import Prediction, Question, Store
from classbench.strategies.asking import seeded_order
from classbench.strategies.closed_set import DEFAULT_PROMPT

CLASSES = [f"class {i:03d} name" for i in range(200)]
SAMPLES = [Sample(f"{i:03d}/{j}.jpg", CLASSES[i]) for i in range(200) for j in range(2)]


def closed_set_question(image: str, shuffle: int) -> Question:
    order = seeded_order(CLASSES, 0, image, "closed-set", shuffle)
    return Question(f"shuffle:{shuffle}", DEFAULT_PROMPT.replace("{classes}", ", ".join(order)), "class 007 name",
                    "class 007 name", 0.25, 2512, 3, {"order": order, "position": order.index("class 007 name"),
                                                      "how": "exact"})


def new_store(folder: Path, classes: list[str] = CLASSES) -> Store:
    store = Store(folder / "run.sqlite")
    store.begin_or_resume({"model": "m"}, SAMPLES, {"classes": classes})
    return store


def test_a_closed_set_question_reads_back_identical_and_shares_one_prompt(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    asked = {sample.id: [closed_set_question(sample.id, k) for k in range(3)] for sample in SAMPLES[:20]}
    for image, questions in asked.items():
        store.record(image, questions, Prediction(image, "x", "class 007 name", "ok"))
    assert [(image, q) for image, q in store.all_questions()] == [(i, q) for i, qs in asked.items() for q in qs]
    assert store.questions_for(["000/1.jpg"])["000/1.jpg"] == {q.key: q for q in asked["000/1.jpg"]}
    db = sqlite3.connect(tmp_path / "run.sqlite")
    assert db.execute("SELECT COUNT(*) FROM prompts").fetchone() == (1,)
    stored = db.execute("SELECT prompt, detail FROM questions").fetchall()
    assert all(prompt is None and "class 0" not in detail for prompt, detail in stored)
    assert max(len(detail) for _, detail in stored) < 400  # the 200 names take about 5 KB written plainly
    assert json.loads(db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]) == "2"


@pytest.mark.parametrize("question", [
    Question("q", "Pick class 001 name, class 002 name, twice: class 001 name, class 002 name",
             detail={"order": ["class 001 name", "class 002 name"]}),
    Question("q", "Pick one of a, b", detail={"order": ["a", "b"], "n": [1, 2]}),
    Question("q", "a \x00order\x00 prompt", detail={"order": ["class 001 name", "class 002 name"]}),
    Question("q", "no list here", detail={"order": ["class 001 name", "class 002 name"], "nested": {"x": [1]}}),
    Question("q", None, detail={"order": ["class 003 name", "class 003 name"]}),
    Question("q", "plain", answer="yes", detail={"reply": "yes", "p_yes": 0.75}),
    Question("q", error="timeout", detail={"attempts": 3}),
    Question("q"),
])
def test_other_prompts_and_details_come_back_exactly(question: Question, tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.record("a", [question], None)
    assert list(store.all_questions()) == [("a", question)]


def test_a_rolled_back_prompt_is_written_again(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    question = closed_set_question("000/0.jpg", 0)
    with pytest.raises(RuntimeError):
        with store.batch():
            store.record("000/0.jpg", [question], None)
            raise RuntimeError("killed halfway")
    store.record("000/0.jpg", [question], None)
    reopened = Store.open_existing(tmp_path)
    assert list(reopened.all_questions()) == [("000/0.jpg", question)]


V01_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE samples (pos INTEGER PRIMARY KEY, image TEXT NOT NULL UNIQUE, label TEXT NOT NULL);
CREATE TABLE questions (id INTEGER PRIMARY KEY, image TEXT NOT NULL, key TEXT NOT NULL, prompt TEXT, answer TEXT,
    label TEXT, latency_s REAL, tokens_in INTEGER, tokens_out INTEGER, detail TEXT, error TEXT, created REAL NOT NULL,
    UNIQUE (image, key));
CREATE TABLE predictions (image TEXT PRIMARY KEY, label TEXT NOT NULL, prediction TEXT,
    status TEXT NOT NULL CHECK (status IN ('ok', 'invalid', 'failed')), error TEXT, latency_s REAL, detail TEXT,
    created REAL NOT NULL);
CREATE TABLE sessions (id INTEGER PRIMARY KEY, started REAL NOT NULL, updated REAL NOT NULL, device TEXT,
    batch_size INTEGER, load_s REAL NOT NULL DEFAULT 0, inference_s REAL NOT NULL DEFAULT 0,
    n_images INTEGER NOT NULL DEFAULT 0, peak_rss_gb REAL, peak_gpu_gb REAL);
"""


def version_1_file(folder: Path, question: Question) -> None:
    """A store laid out as classbench 0.1 wrote it (schema 1): prompt and detail in full."""
    db = sqlite3.connect(folder / "run.sqlite")
    db.executescript(V01_SCHEMA)
    meta = {"schema": "1", "identity": {"model": "m"}, "classes": CLASSES}
    db.executemany("INSERT INTO meta VALUES (?, ?)", [(key, json.dumps(value)) for key, value in meta.items()])
    db.executemany("INSERT INTO samples VALUES (?, ?, ?)", [(i, s.id, s.label) for i, s in enumerate(SAMPLES)])
    db.execute("INSERT INTO questions (image, key, prompt, answer, label, latency_s, tokens_in, tokens_out, detail, "
               "error, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1.0)",
               ("000/0.jpg", question.key, question.prompt, question.answer, question.label, question.latency_s,
                question.tokens_in, question.tokens_out, json.dumps(question.detail), question.error))
    db.commit()
    db.close()


def test_a_version_1_file_is_upgraded_in_place_and_reads_both_layouts(tmp_path: Path) -> None:
    old, new = closed_set_question("000/0.jpg", 0), closed_set_question("000/0.jpg", 1)
    version_1_file(tmp_path, old)
    store = Store.open_existing(tmp_path)
    assert store.meta("schema") == "2"
    assert store.begin_or_resume({"model": "m"}, SAMPLES, {}) is True
    assert store.questions_for(["000/0.jpg"]) == {"000/0.jpg": {old.key: old}}
    store.record("000/0.jpg", [new], Prediction("000/0.jpg", CLASSES[0], "class 007 name", "ok"))
    store.close()
    reopened = Store.open_existing(tmp_path)
    assert list(reopened.all_questions()) == [("000/0.jpg", old), ("000/0.jpg", new)]
    assert reopened.question_outcomes() == [("000/0.jpg", "shuffle:0", 1, None), ("000/0.jpg", "shuffle:1", 1, None)]
    assert reopened.token_totals() == (5024, 6)
    assert [row[1:] for row in reopened.token_rows(since_id=1)] == [("000/0.jpg", 2512, 3)]


def test_a_store_from_a_newer_classbench_is_refused(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.set_meta({"schema": "99"})
    store.close()
    with pytest.raises(UserError, match="newer classbench"):
        Store.open_existing(tmp_path)


def test_done_without_data_only_when_every_sample_is_finished(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.record("000/0.jpg", [], Prediction("000/0.jpg", CLASSES[0], None, "failed", "unreadable image: x"))
    assert store.done_without_data({"model": "m"}) is None
    for sample in SAMPLES[1:]:
        store.record(sample.id, [], Prediction(sample.id, sample.label, sample.label, "ok"))
    assert store.done_without_data({"model": "m"}) == len(SAMPLES)
    assert store.done_without_data({"model": "other"}) is None
    store.record("000/1.jpg", [], Prediction("000/1.jpg", CLASSES[0], None, "failed", "model error: OOM"))
    assert store.done_without_data({"model": "m"}) is None


def test_more_than_256_classes_pack_two_bytes_each(tmp_path: Path) -> None:
    classes = [f"c{i}" for i in range(300)]
    store = new_store(tmp_path, classes)
    order = classes[::-1]
    question = Question("shuffle:0", f"Choose one from {', '.join(order)}.", detail={"order": order, "position": 0})
    store.record("000/0.jpg", [question], None)
    assert list(store.all_questions()) == [("000/0.jpg", question)]
