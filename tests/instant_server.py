"""An OpenAI-compatible chat server that answers at once, for measuring classbench's own cost.

A stand-in, not a model: it answers "no" to a yes/no question and one of `answers` to anything
else (chosen by a CRC of the request body, so a request always gets the same answer), with usage
figures, so closed-set and binary runs go through every step a real server's answers take. With
`echo_key` it also repeats the request's Authorization header in every answer, as a careless
server might.
It is a bare asyncio protocol (HTTP/1.1, keep-alive, Content-Length bodies) so that its own CPU
per request stays far below classbench's and the two can be told apart. `GET /stats` says how
many chat requests came, their body bytes and the server's CPU seconds; with `keep_bodies` the
requests themselves are kept (`heads`, `bodies`) for tests that look at what was sent.

Runs in a thread (`with InstantServer() as server:`) or as its own process, so its CPU is
measured apart: `python tests/instant_server.py [--delay-s S]` prints its URL and serves until
killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import zlib
from dataclasses import dataclass, field

MODEL = "instant"


def _completion(text: str) -> bytes:
    return json.dumps({"id": "chatcmpl-instant", "object": "chat.completion", "created": 0, "model": MODEL,
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 120, "completion_tokens": 2, "total_tokens": 122}}).encode()


@dataclass
class InstantServer:
    answers: tuple[str, ...] = ("cat",)
    delay_s: float = 0.0
    keep_bodies: bool = False
    echo_key: bool = False
    port: int = 0
    requests: int = 0
    body_bytes: int = 0
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._no = self._reply(200, _completion("no"))
        self._replies = [self._reply(200, _completion(answer)) for answer in self.answers]
        models = {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}]}
        self._models = self._reply(200, json.dumps(models).encode())

    @staticmethod
    def _reply(status: int, body: bytes) -> bytes:
        return (f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                .encode() + body)

    def _stats(self) -> bytes:
        cpu = os.times()
        return self._reply(200, json.dumps({"requests": self.requests, "body_bytes": self.body_bytes,
                                            "cpu_s": cpu.user + cpu.system}).encode())

    async def _answer(self, transport: asyncio.Transport, head: bytes, body: bytes) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not transport.is_closing():
            transport.write(self._respond(head, body))

    def _respond(self, head: bytes, body: bytes) -> bytes:
        line = head.split(b"\r\n", 1)[0]
        if line.startswith(b"POST") and b"/chat/completions" in line:
            self.requests += 1
            self.body_bytes += len(body)
            if self.keep_bodies:
                self.heads.append(head)
                self.bodies.append(body)
            if self.echo_key:
                key = next((h.split(b":", 1)[1].strip().decode() for h in head.split(b"\r\n")
                            if h.lower().startswith(b"authorization:")), "")
                return self._reply(200, _completion(f"{self.answers[0]} (you sent {key})"))
            if b"yes or no" in body:
                return self._no
            if len(self._replies) == 1:
                return self._replies[0]
            return self._replies[zlib.crc32(body) % len(self._replies)]
        if b"/models" in line:
            return self._models
        if b"/stats" in line:
            return self._stats()
        return self._reply(404, b'{"error": {"message": "no such route"}}')

    def protocol(self) -> asyncio.Protocol:
        server = self

        class Connection(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport
                self.buffer = bytearray()

            def data_received(self, data: bytes) -> None:
                self.buffer += data
                while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                    head = bytes(self.buffer[:end])
                    length = 0
                    for header in head.split(b"\r\n")[1:]:
                        if header[:15].lower() == b"content-length:":
                            length = int(header[15:])
                    if len(self.buffer) < end + 4 + length:
                        return
                    body = bytes(self.buffer[end + 4:end + 4 + length])
                    del self.buffer[:end + 4 + length]
                    if server.delay_s:
                        asyncio.ensure_future(server._answer(self.transport, head, body))
                    else:
                        self.transport.write(server._respond(head, body))

        return Connection()

    async def serve(self, ready: threading.Event | None = None) -> None:
        self._server = await asyncio.get_running_loop().create_server(self.protocol, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        async with self._server:
            try:
                await self._server.serve_forever()
            except asyncio.CancelledError:
                pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> InstantServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self.serve(ready),), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the instant server did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._thread.join(5)
        self._loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--answer", default="cat")
    args = parser.parse_args()
    server = InstantServer(answers=(args.answer,), delay_s=args.delay_s)

    async def run() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.port:
            await asyncio.sleep(0.01)
        print(server.url, flush=True)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
