"""Hostile OpenAI-compatible servers: a response that drips, a key echoed in any case, a secret in the
server URL's query, answers of the wrong shape, and random JSON for the response parser.

The servers are real sockets on 127.0.0.1 (a bare asyncio protocol in a thread); the client is
classbench's own backend, loaded as a user's run loads it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from trees import make_tree

from classbench.models import load_model
from classbench.models.base import GenerationRequest
from classbench.models.api_response import Malformed, parse_completion

KEY = "sk-TestKey-AbCdEf123456"
Handler = Callable[[bytes, asyncio.StreamWriter], "asyncio.Future[None] | None"]


def _response(status: int, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def _completion(text: object) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).encode()


@contextmanager
def serving(handle: Callable[[bytes, asyncio.StreamWriter], object]) -> Iterator[str]:
    """A server on 127.0.0.1 whose chat requests `handle(head, writer)` answers; GET /models is 404
    (a server without a model listing is trusted)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if length:
                await reader.readexactly(length)
            if head.startswith(b"GET"):
                writer.write(_response(404, b'{"error": {"message": "no listing"}}'))
            else:
                result = handle(head, writer)
                if asyncio.iscoroutine(result):
                    await result
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def start() -> None:
        server = await asyncio.start_server(client, "127.0.0.1", 0)
        box["server"] = server
        box["port"] = server.sockets[0].getsockname()[1]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{box['port']}/v1"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        box["server"].close()  # type: ignore[attr-defined]
        if pending:
            loop.run_until_complete(asyncio.wait(pending))
        loop.close()


def _ask(url: str, **options: object) -> object:
    backend = load_model("openai:m", {"base_url": [url], "max_retries": 0, **options}, "cpu")
    try:
        return backend.generate([GenerationRequest(Image.new("RGB", (8, 8)), "what is it?", 3)])[0]
    finally:
        backend.close()


def test_the_timeout_bounds_a_response_that_drips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 3: 4 bytes every 0.5 s used to keep a request with --timeout-s 2 alive for its whole body."""
    async def drip(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(60):  # 30 s of a body that never completes
            writer.write(b"    ")
            await writer.drain()
            await asyncio.sleep(0.5)

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with serving(drip) as url:
        started = time.monotonic()
        answer = _ask(url, timeout_s=2)
        spent = time.monotonic() - started
    assert answer.error and "timeout" in answer.error
    assert spent < 15, f"a 2 s timeout let the request run {spent:.0f} s"


def test_a_key_echoed_in_any_case_is_never_stored_or_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 4: a key echoed lowercased in an error, or uppercased in an answer, was stored as it came."""
    calls = {"n": 0}

    def echo(head: bytes, writer: asyncio.StreamWriter) -> None:
        calls["n"] += 1
        if calls["n"] % 2:
            writer.write(_response(500, json.dumps({"error": {"message": f"bad key {KEY.lower()}"}}).encode()))
        else:
            writer.write(_response(200, _completion(f"cat (you sent {KEY.upper()})")))

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    tree = make_tree(tmp_path / "tree", folders=("001.cat", "002.dog"), per_class=2, background=False)
    with serving(echo) as url:
        done = subprocess.run([sys.executable, "-m", "classbench", "run", "--dataset", str(tree), "--model",
                               "openai:m", "--strategy", "closed-set", "--base-url", url, "--max-retries", "0",
                               "--out", str(tmp_path / "run"), "--no-progress"],
                              capture_output=True, text=True, timeout=120)
    assert calls["n"] >= 4, done.stderr
    seen = done.stdout + done.stderr + "".join(path.read_bytes().decode("latin-1")
                                               for path in (tmp_path / "run").rglob("*") if path.is_file())
    assert KEY.lower() not in seen.lower()
    assert "[api key]" in seen, "the echoes were there, scrubbed"


def test_a_secret_in_the_base_url_query_is_sent_but_never_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "QuErYsEcReT789"
    heads: list[bytes] = []

    def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        heads.append(head)
        writer.write(_response(200, _completion(f"dog, not {secret.lower()}")))

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    tree = make_tree(tmp_path / "tree", folders=("001.cat", "002.dog"), per_class=1, background=False)
    with serving(answer) as url:
        done = subprocess.run([sys.executable, "-m", "classbench", "run", "--dataset", str(tree), "--model",
                               "openai:m", "--strategy", "closed-set", "--base-url", f"{url}?api_key={secret}",
                               "--out", str(tmp_path / "run"), "--no-progress"],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert heads and all(f"/v1/chat/completions?api_key={secret}".encode() in head for head in heads)
    kept = done.stdout + done.stderr + "".join(path.read_bytes().decode("latin-1")
                                               for path in (tmp_path / "run").rglob("*") if path.is_file())
    assert secret.lower() not in kept.lower()
    assert "api_key=[secret]" in kept, "the run records the URL with the secret replaced"


@pytest.mark.parametrize("body, why", [
    (_completion(42), "content is not text"),
    (json.dumps({"choices": [{"message": {"content": "cat"}, "logprobs": {"content": [{"x": 1}]}}]}).encode(),
     "KeyError"),
    (b'{"choices": "none"}', "not a chat completion"),
])
def test_answers_of_the_wrong_shape_are_malformed_and_asked_again(body: bytes, why: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`content: 42` gave an AttributeError text and was not retried."""
    calls = {"n": 0}

    def wrong_then_right(head: bytes, writer: asyncio.StreamWriter) -> None:
        calls["n"] += 1
        writer.write(_response(200, body if calls["n"] == 1 else _completion("cat")))

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with serving(wrong_then_right) as url:
        answer = _ask(url, max_retries=2, backoff_s=0.01)
    assert answer.error is None and answer.text == "cat" and answer.attempts == 2
    with pytest.raises(Malformed, match=why):
        parse_completion(json.loads(body), 0.0, 1, str)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=20)
SHAPED = st.fixed_dictionaries({"choices": st.lists(st.fixed_dictionaries(
    {"message": st.fixed_dictionaries({}, optional={"content": JSON}), "logprobs": JSON}), max_size=2),
    "usage": JSON})


@settings(max_examples=300, deadline=None)
@given(response=st.one_of(JSON, SHAPED))
def test_any_json_is_an_answer_or_malformed_never_another_error(response: object) -> None:
    try:
        generation = parse_completion(response, 0.0, 1, lambda text: text.replace(KEY, "[api key]"))
    except Malformed:
        return
    assert isinstance(generation.text, str)
    assert generation.tokens_in is None or generation.tokens_in >= 0
