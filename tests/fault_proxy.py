"""A small HTTP proxy that injects the faults real API servers produce, on a set schedule.

Tests put it between classbench and a real OpenAI-compatible server. Only chat-completion
requests are faulted (model listings and health checks pass through), and every chat request is
counted by what the proxy did to it, so a test can compare the proxy's counts with the attempts
and failures classbench recorded.

Faults: `429` (with `Retry-After`), `500`, `slow` (wait, then forward), `drop` (close the
connection without answering) and `malformed` (a 200 whose JSON body is cut off); for special
cases, `401` (key refused) and `leak` (a 500 whose message echoes the request's Authorization
header, as a careless server might).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("429", "500", "slow", "drop", "malformed")
Plan = Callable[[int], str | None]
"""Request number (0-based, in arrival order) → the fault to inject, or None to forward it."""


def every(n: int, kinds: Sequence[str] = FAULTS) -> Plan:
    """Fault one request in `n` (the n-th, 2n-th, …), cycling through `kinds`."""
    def plan(index: int) -> str | None:
        if (index + 1) % n:
            return None
        return kinds[((index + 1) // n - 1) % len(kinds)]
    return plan


def first(n: int, kind: str) -> Plan:
    """Fault the first `n` requests with `kind`, then forward everything."""
    return lambda index: kind if index < n else None


def never(index: int) -> None:
    return None


@dataclass
class Record:
    index: int
    fault: str | None
    arrived: float
    body: bytes = b""
    authorization: str | None = None


@dataclass
class FaultProxy:
    upstream: str
    plan: Plan = never
    retry_after: str = "0.2"
    slow_s: float = 3.0
    records: list[Record] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._forward(body)
                    return
                with proxy._lock:
                    record = Record(len(proxy.records), None, time.monotonic(), body,
                                    self.headers.get("Authorization"))
                    record.fault = proxy.plan(record.index)
                    proxy.records.append(record)
                fault = record.fault
                if fault == "429":
                    self._answer(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                                 {"Retry-After": proxy.retry_after})
                elif fault == "500":
                    self._answer(500, b'{"error": {"message": "internal error", "type": "server_error"}}')
                elif fault == "401":
                    self._answer(401, b'{"error": {"message": "Incorrect API key provided"}}')
                elif fault == "leak":
                    echo = json.dumps({"error": {"message": f"bad header {record.authorization}"}}).encode()
                    self._answer(500, echo)
                elif fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif fault == "malformed":
                    self._answer(200, b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"mess')
                else:
                    if fault == "slow":
                        time.sleep(proxy.slow_s)
                    self._forward(body)

            def _forward(self, body: bytes) -> None:
                target = urlsplit(proxy.upstream)
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
                headers = {key: value for key, value in self.headers.items()
                           if key.lower() not in ("host", "connection", "content-length")}
                try:
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    response = connection.getresponse()
                    payload = response.read()
                    content_type = response.getheader("Content-Type", "application/json")
                    self._answer(response.status, payload, {"Content-Type": content_type})
                finally:
                    connection.close()

            def _answer(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def counts(self) -> Counter[str]:
        """What happened to the chat requests: `ok` or the fault's name, counted."""
        with self._lock:
            return Counter(record.fault or "ok" for record in self.records)

    def reset(self, plan: Plan = never) -> None:
        with self._lock:
            self.records.clear()
            self.plan = plan

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
