"""A scripted OpenAI-compatible chat server that returns first-token log-probabilities.

A stand-in: the servers that send `top_logprobs` (the OpenAI API, vLLM) cannot run offline on a
CPU test machine, and `transformers serve` ignores the request. It speaks the OpenAI response
shape (`choices[0].logprobs.content[0].top_logprobs`, best first, cut to the `top_logprobs` asked
for, and only when `logprobs` is true), and answers deterministically from the request: `respond`
gets the colour of the image's top-left pixel (images travel as lossless PNG) and the prompt.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

Reply = tuple[str, str, dict[str, float]]
"""The generated text, its first token, and the likely first tokens → log-probability."""
Respond = Callable[[tuple[int, int, int], str], Reply]


@dataclass
class LogprobServer:
    model: str
    respond: Respond
    requests: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LogprobServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._answer(200, {"object": "list", "data": [
                        {"id": server.model, "object": "model", "created": 0, "owned_by": "tests"}]})
                else:
                    self._answer(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._answer(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    server.requests.append(body)
                self._answer(200, server.completion(body))

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        content = body["messages"][0]["content"]
        url = next(part["image_url"]["url"] for part in content if part["type"] == "image_url")
        prompt = next(part["text"] for part in content if part["type"] == "text")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        text, first, top = self.respond(image.getpixel((0, 0)), prompt)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}
        if body.get("logprobs"):
            best = sorted(top.items(), key=lambda pair: -pair[1])[:int(body.get("top_logprobs") or 0)]
            choice["logprobs"] = {"content": [{
                "token": first, "logprob": top[first], "bytes": None,
                "top_logprobs": [{"token": token, "logprob": logprob, "bytes": None} for token, logprob in best],
            }]}
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": self.model,
                "choices": [choice],
                "usage": {"prompt_tokens": 50, "completion_tokens": 3, "total_tokens": 53}}

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> LogprobServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
