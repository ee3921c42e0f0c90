"""The OpenAI-compatible backend against a real server (`transformers serve` with a tiny LLaVA
rigged to answer "cat"), through a proxy that injects the faults real servers produce.

What must hold: every question is answered once in the end or its failure is reported exactly;
attempts recorded equal requests the proxy saw; a killed run resumes without asking anything
twice; --max-cost stops cleanly; and the API key appears in no file and no output.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("fastapi")
pytest.importorskip("transformers")

from fault_proxy import FaultProxy, every, first, never  # noqa: E402
from openai_server import transformers_serve  # noqa: E402
from store_rows import stored_rows  # noqa: E402

from classbench.errors import UserError  # noqa: E402
from classbench.models import load_model  # noqa: E402
from classbench.models.base import GenerationRequest  # noqa: E402
from classbench.models.logprobs import require_first_token_logprobs  # noqa: E402
from tinymodels.tiny_models import Rig, build_tiny_vlm, make_rgb_images  # noqa: E402

pytestmark = pytest.mark.slow

KEY = "sk-test-7d0f3c9a51e24b8e"
CLASSES = ("cat", "dog", "car")
N_IMAGES = 12
FAST = {"timeout_s": 5.0, "backoff_s": 0.02}
"""Short timeouts and backoff keep the faults cheap; the proxy's slow answers take 6 s. A busy test
machine may also time out a request now and then, so counts are asserted as "every attempt reached
the proxy" and "every injected fault cost a retry", which hold either way."""
PATIENT = "60"
"""The timeout for tests whose counts must not include a spurious retry."""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vlm("llava", tmp_path_factory.mktemp("llava-cat"), words=CLASSES, rig=Rig(answer="cat"))


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with transformers_serve(model_dir, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def proxy(server: str) -> Iterator[FaultProxy]:
    with FaultProxy(server, slow_s=6.0) as running:
        yield running


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for index, image in enumerate(make_rgb_images(N_IMAGES)):
        folder = root / CLASSES[index % len(CLASSES)]
        folder.mkdir(exist_ok=True)
        image.save(folder / f"{index:03d}.png")
    return root


def _backend(model_dir: Path, *urls: str, **options: object):
    return load_model(f"openai:{model_dir}", {"base_url": list(urls), **FAST, **options})


def _requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(image, "What is in this photo? Answer:") for image in make_rgb_images(n, seed=1)]


# --- the backend on its own -----------------------------------------------------------------------


def test_every_request_is_answered_through_one_in_five_faults(model_dir: Path, proxy: FaultProxy) -> None:
    proxy.reset(every(5))
    backend = _backend(model_dir, proxy.url, concurrency=4)
    try:
        generations = backend.generate(_requests(20))
    finally:
        backend.close()
    counts = proxy.counts()
    assert [g.text for g in generations] == ["cat"] * 20
    assert all(g.error is None and g.tokens_in and g.tokens_out for g in generations)
    assert sum(g.attempts for g in generations) == len(proxy.records)
    assert sum(g.attempts - 1 for g in generations) >= sum(n for kind, n in counts.items() if kind != "ok")
    assert {"429", "500", "slow", "drop"} <= set(counts)


def test_retry_after_is_waited_for_and_malformed_answers_are_retried(model_dir: Path, proxy: FaultProxy) -> None:
    proxy.reset(lambda index: ("429", "malformed")[index] if index < 2 else None)
    proxy.retry_after = "0.4"
    backend = _backend(model_dir, proxy.url, concurrency=1, timeout_s=float(PATIENT))
    try:
        [generation] = backend.generate(_requests(1))
    finally:
        backend.close()
        proxy.retry_after = "0.2"
    assert generation.text == "cat" and generation.attempts == 3 == len(proxy.records)
    assert proxy.records[1].arrived - proxy.records[0].arrived >= 0.4 - 0.01  # event-loop clock resolution


def test_a_fleet_shares_the_load_and_routes_around_a_dead_server(model_dir: Path, server: str,
                                                                proxy: FaultProxy) -> None:
    proxy.reset(never)
    with FaultProxy(server) as second, FaultProxy(server, plan=lambda _: "drop") as dead:
        backend = _backend(model_dir, proxy.url, second.url, concurrency=4)
        try:
            assert [g.text for g in backend.generate(_requests(12))] == ["cat"] * 12
        finally:
            backend.close()
        assert len(proxy.records) > 0 and len(second.records) > 0
        assert len(proxy.records) + len(second.records) == 12

        proxy.reset(never)
        backend = _backend(model_dir, proxy.url, dead.url, concurrency=2)
        try:
            generations = backend.generate(_requests(12))
        finally:
            backend.close()
        assert [g.text for g in generations] == ["cat"] * 12
        assert sum(g.attempts for g in generations) == len(proxy.records) + len(dead.records)
        assert len(dead.records) < len(proxy.records)


def test_requests_that_cannot_succeed_stop_with_what_to_do(model_dir: Path, proxy: FaultProxy) -> None:
    proxy.reset(lambda _: "401")
    backend = _backend(model_dir, proxy.url)
    try:
        with pytest.raises(UserError, match="refused the API key.*--api-key-env"):
            backend.generate(_requests(3))
    finally:
        backend.close()
    proxy.reset(never)
    with pytest.raises(UserError, match=r"does not serve 'no-such-model'; it serves: .*llava"):
        load_model("openai:no-such-model", {"base_url": [proxy.url], **FAST})
    with pytest.raises(UserError, match="cannot reach .*Is the server running"):
        load_model("openai:x", {"base_url": ["http://127.0.0.1:9/v1"], **FAST})


def test_a_server_without_logprobs_gets_a_clear_message(model_dir: Path, proxy: FaultProxy) -> None:
    proxy.reset(never)
    backend = _backend(model_dir, proxy.url, top_logprobs=5)
    try:
        [generation] = backend.generate(_requests(1))
    finally:
        backend.close()
    assert json.loads(proxy.records[0].body)["top_logprobs"] == 5
    assert generation.first_token_logprobs is None
    with pytest.raises(UserError, match="needs the first answer token's log-probabilities.*closed-set"):
        require_first_token_logprobs(generation, backend.model_id, "likelihood")


# --- whole runs from the command line ---------------------------------------------------------------


def _command(tree: Path, model_dir: Path, proxy: FaultProxy, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "classbench", "run", "--dataset", str(tree), "--model", f"openai:{model_dir}",
            "--strategy", "closed-set", "--base-url", proxy.url, "--out", str(out), "--no-progress",
            "--timeout-s", str(FAST["timeout_s"]), "--option", f"backoff_s={FAST['backoff_s']}", *extra]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _questions(out: Path) -> list[tuple[str, str, str | None, str | None]]:
    with sqlite3.connect(out / "run.sqlite") as db:
        return db.execute("SELECT image, key, answer, error FROM questions ORDER BY image").fetchall()


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _assert_key_nowhere(out: Path, *outputs: str) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert all(KEY not in text for text in outputs)


def test_a_run_through_faults_answers_every_image_once(tree: Path, model_dir: Path, proxy: FaultProxy,
                                                       tmp_path: Path) -> None:
    proxy.reset(every(5))
    done = _run(_command(tree, model_dir, proxy, tmp_path, "--price-in", "2.5", "--price-out", "10",
                         "--batch-size", "6", "--concurrency", "3"))
    assert done.returncode == 0, done.stderr
    questions = _questions(tmp_path)
    metrics = _metrics(tmp_path)
    assert len(questions) == N_IMAGES == len({image for image, *_ in questions})
    assert all(answer == "cat" and error is None for _, _, answer, error in questions)
    assert metrics["n_images"] == N_IMAGES and metrics["n_failed"] == 0 and metrics["complete"]
    faults = sum(n for kind, n in proxy.counts().items() if kind != "ok")
    assert faults > 0 and metrics["retries"] >= faults and len(proxy.records) == N_IMAGES + metrics["retries"]
    assert metrics["tokens_in"] > 0 and metrics["cost_usd"] == pytest.approx(
        (metrics["tokens_in"] * 2.5 + metrics["tokens_out"] * 10) / 1e6, abs=1e-6)
    assert f"{metrics['retries']} retries" in done.stdout and "cost $" in done.stdout
    assert "USD / 1k images" in done.stdout
    assert all(record.authorization == f"Bearer {KEY}" for record in proxy.records)
    _assert_key_nowhere(tmp_path, done.stdout, done.stderr)


def test_failures_are_listed_then_asked_once_more(tree: Path, model_dir: Path, proxy: FaultProxy,
                                                   tmp_path: Path) -> None:
    proxy.reset(first(3, "leak"))
    command = _command(tree, model_dir, proxy, tmp_path, "--max-retries", "0", "--concurrency", "1",
                       "--timeout-s", PATIENT)
    done = _run(command)
    assert done.returncode == 0, done.stderr
    metrics = _metrics(tmp_path)
    failed = {q["image"] for q in metrics["failed_questions"]}
    assert metrics["n_failed_questions"] == 3 == len(failed) and not metrics["complete"]
    assert {f["image"] for f in metrics["failures"]} == failed
    assert all("HTTP 500" in q["error"] and "[api key]" in q["error"] for q in metrics["failed_questions"])
    assert "3 failed" in done.stdout and "asked again by the next run" in done.stdout
    _assert_key_nowhere(tmp_path, done.stdout, done.stderr)

    proxy.reset(never)
    again = _run(command)
    assert again.returncode == 0, again.stderr
    assert len(proxy.records) == 3
    questions = _questions(tmp_path)
    assert len(questions) == N_IMAGES and all(error is None for *_, error in questions)
    assert _metrics(tmp_path)["complete"] and _metrics(tmp_path)["n_failed_questions"] == 0


def test_kill_9_mid_run_then_the_same_command_finishes_the_job(tree: Path, model_dir: Path, proxy: FaultProxy,
                                                               tmp_path: Path) -> None:
    proxy.reset(lambda _: "slow")
    proxy.slow_s = 0.3
    command = _command(tree, model_dir, proxy, tmp_path, "--batch-size", "2", "--concurrency", "1",
                       "--timeout-s", PATIENT)
    process = subprocess.Popen(command, env={**os.environ, "OPENAI_API_KEY": KEY},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while stored_rows(tmp_path, "questions", "error IS NULL") < 2:
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        proxy.slow_s = 6.0
    before = stored_rows(tmp_path, "questions", "error IS NULL")
    assert 2 <= before < N_IMAGES

    proxy.reset(never)
    done = _run(command)
    assert done.returncode == 0, done.stderr
    assert len(proxy.records) == N_IMAGES - before
    questions = _questions(tmp_path)
    assert len(questions) == N_IMAGES == len({image for image, *_ in questions})
    assert _metrics(tmp_path)["complete"]


def test_max_cost_stops_cleanly_and_a_higher_cap_finishes(tree: Path, model_dir: Path, proxy: FaultProxy,
                                                          tmp_path: Path) -> None:
    proxy.reset(never)
    command = _command(tree, model_dir, proxy, tmp_path, "--batch-size", "4", "--price-in", "1000",
                       "--price-out", "1000", "--timeout-s", PATIENT)
    stopped = _run([*command, "--max-cost", "0.3"])
    assert stopped.returncode == 3, stopped.stderr
    assert "past --max-cost $0.3" in stopped.stderr and "higher --max-cost" in stopped.stderr
    assert len(proxy.records) == 4 and len(_questions(tmp_path)) == 4
    assert 0 < _metrics(tmp_path)["cost_usd"] < 0.3

    again = _run([*command, "--max-cost", "0.3"])
    assert again.returncode == 3 and len(proxy.records) == 4

    finished = _run([*command, "--max-cost", "100"])
    assert finished.returncode == 0, finished.stderr
    assert len(proxy.records) == N_IMAGES and len(_questions(tmp_path)) == N_IMAGES
    assert _metrics(tmp_path)["complete"]


def test_likelihood_on_a_server_without_logprobs_stops_at_the_first_answer(tree: Path, model_dir: Path,
                                                                          proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.reset(never)
    command = _command(tree, model_dir, proxy, tmp_path, "--timeout-s", PATIENT, "--batch-size", "6")
    command[command.index("closed-set")] = "likelihood"
    done = _run(command)
    assert done.returncode == 2, done.stderr
    assert "--strategy likelihood needs the first answer token's log-probabilities" in done.stderr
    assert "transformers serve ignores" in done.stderr and "--strategy closed-set or --strategy binary" in done.stderr
    assert len(proxy.records) == 1 and json.loads(proxy.records[0].body)["top_logprobs"] == 20
    assert stored_rows(tmp_path, "questions", "error IS NULL") == 0
