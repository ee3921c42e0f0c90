"""The closed-set strategy end to end: K seeded shuffles per image, the vote, what is stored,
the summary, model errors that are retried, and exact resume after kill -9 between shuffles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from vlm_fixtures import (  # noqa: E402
    CLASSES,
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
from classbench.strategies.closed_set import vote  # noqa: E402
from tinymodels.tiny_models import Rig  # noqa: E402

CAT = Rig(answer="cat")


@pytest.mark.parametrize("arch", arch_params(("qwen2_5_vl", "smolvlm")))
def test_a_model_that_always_says_cat_predicts_cat_after_k_stored_shuffles(arch: str, tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "tree")
    out = tmp_path / "run"
    metrics = run(tree, out, model_folder(arch, CAT), "closed-set", shuffles=3, background="clutter", batch_size=3)

    predictions = read_predictions(out)
    assert len(predictions) == 4 and set(predictions.values()) == {"cat"}
    rows = questions(out)
    assert sorted((image, key) for _, image, key, *_ in rows) == sorted(
        (image, f"shuffle:{k}") for image in predictions for k in range(3))
    for _, image, key, answer, label, detail, error, _ in rows:
        detail = json.loads(detail)
        assert (answer, label, error) == ("cat", "cat", None)
        assert sorted(detail["order"]) == sorted(CLASSES)
        assert detail["order"][detail["position"]] == "cat"
        assert detail["order"] == seeded_order(metrics["classes"], 0, image, "closed-set", int(key.split(":")[1]))
    assert metrics["accuracy"] == pytest.approx(accuracy_from_csv(out)) == 0.25
    assert metrics["n_images"] == 4 and metrics["invalid"] == 0
    summary = metrics["strategy_summary"]
    assert summary["vote_agreement"] == 1.0 and summary["unanimous_share"] == 1.0
    bias = summary["positional_bias"]
    assert bias["answers"] == 12 and sum(bias["count_by_position"]) == 12
    positions = [json.loads(row[5])["position"] for row in rows]
    assert bias["count_by_position"] == [positions.count(i) for i in range(4)]
    assert bias["uniform_share"] == 0.25


def test_orders_are_seeded_by_run_image_and_shuffle() -> None:
    first = seeded_order(CLASSES, 0, "a.png", "closed-set", 0)
    assert first == seeded_order(CLASSES, 0, "a.png", "closed-set", 0)
    orders = {tuple(seeded_order(CLASSES, seed, image, "closed-set", k))
              for seed in (0, 1) for image in ("a.png", "b.png") for k in range(3)}
    assert len(orders) > 4
    # SHA-256 based, so independent of PYTHONHASHSEED: a fixed value guards against drift.
    script = "from classbench.strategies.asking import seeded_order as s; print(s(['cat','dog','car','clutter'], 0, 'a.png', 'closed-set', 0))"
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"}, check=True)
    assert other.stdout.strip() == str(first)


@pytest.mark.parametrize(("labels", "winner"), [
    (["dog", "cat", "cat"], "cat"),
    (["dog", "cat", None], "dog"),
    (["cat", "dog", "dog", "cat"], "cat"),
    ([None, None, "car"], "car"),
    ([None, None], None),
])
def test_the_vote_ignores_invalid_answers_and_breaks_ties_by_earliest_shuffle(labels: list, winner: str | None) -> None:
    assert vote(labels)[0] == winner


def test_a_prompt_without_the_class_list_is_refused(tmp_path: Path) -> None:
    from classbench.errors import UserError

    with pytest.raises(UserError, match="{classes}"):
        run(image_tree(tmp_path / "tree"), tmp_path / "run", model_folder("llava", CAT), "closed-set",
            prompt="What is this?")


def test_a_custom_prompt_template_is_what_the_model_is_asked(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(image_tree(tmp_path / "tree"), out, model_folder("llava", CAT), "closed-set",
        prompt="Pick {classes} {oddly braced}?", batch_size=4)
    from classbench.store import Store

    store = Store.open_existing(out)
    prompts = [q.prompt for _, q in store.all_questions()]
    store.close()
    assert prompts
    assert all(p.startswith("Pick ") and p.endswith(" {oddly braced}?") for p in prompts)


def test_model_errors_fail_the_image_and_the_next_run_asks_only_what_failed(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from classbench.models import hf_backend as hf_vlm
    from classbench.models.base import Generation

    tree = image_tree(tmp_path / "tree")
    out = tmp_path / "run"
    real = hf_vlm.HFVisionLanguageModel.generate
    broken = {"calls": 0}

    def third_call_fails(self, requests):
        broken["calls"] += 1
        if broken["calls"] == 3:
            return [Generation(text="", error="CUDA out of memory")] + real(self, requests[1:])
        return real(self, requests)

    monkeypatch.setattr(hf_vlm.HFVisionLanguageModel, "generate", third_call_fails)
    first = run(tree, out, model_folder("llava", CAT), "closed-set", shuffles=2, batch_size=2)
    assert first["n_failed"] == 1 and not first["complete"]
    assert first["failures"][0]["error"].startswith("model error: CUDA out of memory")
    before = {(image, key): (qid, error) for qid, image, key, *_, error, _ in questions(out)}
    assert sum(error is not None for _, error in before.values()) == 1

    monkeypatch.setattr(hf_vlm.HFVisionLanguageModel, "generate", real)
    second = run(tree, out, model_folder("llava", CAT), "closed-set", shuffles=2, batch_size=2)
    assert second["complete"] and second["n_failed"] == 0 and second["accuracy"] == 0.25
    after = {(image, key): (qid, error) for qid, image, key, *_, error, _ in questions(out)}
    assert len(after) == 8 and all(error is None for _, error in after.values())
    kept = [key for key, (qid, error) in before.items() if error is None and after.get(key, (None,))[0] == qid]
    assert len(kept) == len([1 for _, error in before.values() if error is None]), "answered questions were re-asked"


KILL_AFTER_WRITES = """
import os, signal, sys
from classbench import cli, runner
writes = {"n": 0}
original = runner._write
def write(*args, **kwargs):
    result = original(*args, **kwargs)
    if args[1]:
        args[0].flush()  # commit what was handed over now (commits.Committer), so the kill follows a commit
        writes["n"] += 1
        if writes["n"] == int(os.environ["KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)
    return result
runner._write = write
sys.argv = ["classbench", *sys.argv[1:]]
cli.main()
"""


def test_kill_9_between_shuffles_resumes_with_the_next_shuffle(tmp_path: Path) -> None:
    """A real `classbench run` is killed by SIGKILL right after its second commit: the first image
    then holds two of its three shuffles. The resumed run asks exactly what is missing and ends
    identical to an uninterrupted run."""
    tree = image_tree(tmp_path / "tree")
    model = model_folder("qwen2_vl")
    settings = ["--strategy", "closed-set", "--shuffles", "3", "--background", "clutter", "--batch-size", "1",
                "--seed", "5", "--device", "cpu", "--no-progress", "--max-new-tokens", "3"]
    command = ["run", "--dataset", str(tree), "--model", f"hf:{model}", *settings]
    killed_out, whole_out = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "KILL_AFTER": "2"}
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_WRITES, *command, "--out", str(killed_out)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    partial = questions(killed_out)
    assert [key for _, _, key, *_ in partial] == ["shuffle:0", "shuffle:1"]
    assert not (killed_out / "predictions.csv").exists()

    from classbench import runner
    from classbench.spec import RunSpec

    logged: list[str] = []
    spec = RunSpec.from_flat(dataset=str(tree), model=f"hf:{model}", strategy="closed-set", shuffles=3, background="clutter",
                   batch_size=1, seed=5, device="cpu", max_new_tokens=3)
    result = runner.run(spec, killed_out, log=logged.append, check_batching=True)
    assert result.resumed and any("gave the same" in line for line in logged), logged
    _write_metrics(killed_out)
    run(tree, whole_out, model, "closed-set", shuffles=3, background="clutter", batch_size=1, seed=5,
        max_new_tokens=3)

    final = questions(killed_out)
    assert final[:2] == partial, "questions answered before the kill must not be asked again"
    assert len(final) == 12 == len({(image, key) for _, image, key, *_ in final})
    strip = lambda rows: sorted((image, key, answer, label, detail) for _, image, key, answer, label, detail, *_ in rows)  # noqa: E731
    assert strip(final) == strip(questions(whole_out))
    assert read_predictions(killed_out) == read_predictions(whole_out)
    resumed_metrics, whole_metrics = read_metrics(killed_out), read_metrics(whole_out)
    for key in ("accuracy", "macro_avg", "weighted_avg", "invalid", "n_images", "strategy_summary"):
        assert resumed_metrics[key] == whole_metrics[key], key
    assert resumed_metrics["complete"] and resumed_metrics["sessions"] == 2


def _write_metrics(out: Path) -> None:
    from classbench import metrics
    from classbench.store import Store

    store = Store.open_existing(out)
    try:
        metrics.write(store, out)
    finally:
        store.close()


def test_kill_9_mid_chunk_at_batch_4_resumes_to_the_same_answers(tmp_path: Path) -> None:
    """At --batch-size 4 a resumed chunk asks its missing questions in other batches than an
    uninterrupted run would; with padding-invariant batching the answers are still identical."""
    tree = image_tree(tmp_path / "tree", per_class=2)
    model = model_folder("llava")
    settings = dict(shuffles=3, background="clutter", batch_size=4, seed=2, max_new_tokens=3)
    command = ["run", "--dataset", str(tree), "--model", f"hf:{model}", "--strategy", "closed-set", "--shuffles", "3",
               "--background", "clutter", "--batch-size", "4", "--seed", "2", "--device", "cpu", "--no-progress",
               "--max-new-tokens", "3", "--out", str(tmp_path / "killed")]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_WRITES, *command],
                            env={**os.environ, "KILL_AFTER": "3"}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    partial = questions(tmp_path / "killed")
    assert 0 < len(partial) < 24
    run(tree, tmp_path / "killed", model, "closed-set", **settings)
    run(tree, tmp_path / "whole", model, "closed-set", **settings)
    final = questions(tmp_path / "killed")
    assert final[:len(partial)] == partial and len(final) == 24
    strip = lambda rows: sorted((image, key, answer, label) for _, image, key, answer, label, *_ in rows)  # noqa: E731
    assert strip(final) == strip(questions(tmp_path / "whole"))
    assert read_predictions(tmp_path / "killed") == read_predictions(tmp_path / "whole")
