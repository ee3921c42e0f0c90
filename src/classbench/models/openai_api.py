"""OpenAI-compatible chat servers: `--model openai:<name>` (GPT-4o, vLLM, SGLang, `transformers
serve`, Ollama).

A batch of questions goes out as concurrent requests on one event loop that lives as long as the
backend, so connections are reused from batch to batch; the HTTP side is `api_http` (aiohttp and
orjson: a tenth of the official client's CPU per request), the image side `api_payload` (each
image's file sent as it is where it can be, made once per image). Several `--base-url`s form one fleet:
each request goes to the server with the fewest requests in flight, and a server that just failed
is rested for a while. classbench's own retry policy is the only one that runs (the client's is
off), so every attempt is counted and reaches the store through `Generation.attempts`.

The API key is read from the environment when the backend loads and lives only inside the
client: it is not a setting, not part of the spec, and is scrubbed from everything a server sends
back that is kept (answers, error messages).

Every request may ask for the first answer token's `top_logprobs` (`--option top_logprobs=N`, or
a strategy's `GenerationRequest.top_logprobs`), hence the `first_token_logprobs` capability; the
OpenAI API and vLLM send them, `transformers serve` ignores the request (`models/logprobs.py`).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator

from classbench import pricing
from classbench.errors import UserError
from classbench.models.api_payload import IMAGE, Payloads
from classbench.models.api_response import Malformed, parse_completion, redact_url, url_secrets
from classbench.models.base import Generation, GenerationRequest, Generator
from classbench.models.ratelimit import Backoff, RateLimiter, retry_after_s
from classbench.settings import Settings, option_only, runtime

__all__ = ["OpenAIBackend", "OpenAISettings", "load_openai"]

OPENAI_URL = "https://api.openai.com/v1"


class OpenAISettings(Settings):
    """Server settings are runtime: the model name is the run's identity, so a fleet may change between
    sessions of one run. Sampling settings decide answers and are not."""

    base_url: list[str] | None = runtime(None, "server URL ending in /v1 (vLLM, SGLang, transformers serve); repeat "
                                         "for a fleet that shares the load [default: the OpenAI API]")
    api_key_env: str = runtime("OPENAI_API_KEY", "environment variable that holds the API key (never stored)")
    concurrency: int = runtime(16, "requests in flight across all servers; keep --batch-size at least this high",
                               ge=1)
    rpm: float | None = runtime(None, "at most this many requests per minute, retries included", gt=0)
    timeout_s: float = runtime(60.0, "seconds before a request is abandoned and retried", gt=0)
    max_retries: int = runtime(6, "retries per question on 429, 5xx, timeouts, dropped connections, malformed "
                                  "answers", ge=0)
    price_in: float | None = runtime(None, "USD per million input tokens [default: classbench's price table, for "
                                           "known API models]", ge=0)
    price_out: float | None = runtime(None, "USD per million output tokens [default: the price table]", ge=0)
    max_pixels: int | None = Field(default=None, ge=1, description="at most this many pixels per image")
    temperature: float | None = option_only(0.0, "sampling temperature (0: greedy)")
    top_logprobs: int = option_only(0, "likely first answer tokens to ask for with every question, 0–20", ge=0,
                                    le=20)
    image_detail: str | None = option_only(None, "the API's image `detail` (low, high, auto)")
    backoff_s: float = option_only(1.0, "first retry delay in seconds (doubles, with jitter)", runtime_setting=True,
                                   gt=0)

    @classmethod
    def redact(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The settings as the run folder keeps them: secrets in a --base-url's query replaced."""
        urls = values.get("base_url")
        return {**values, "base_url": [redact_url(url) for url in urls]} if urls else values

    @field_validator("base_url", mode="before")
    @classmethod
    def _no_credentials(cls, value: Any) -> Any:
        urls = [value] if isinstance(value, str) else value
        for url in urls or ():
            parts = urlsplit(str(url))
            if parts.username or parts.password:
                raise ValueError(f"{parts.scheme}://…@{parts.hostname}: a user or password in the URL would be "
                                 "stored with the run; put the key in an environment variable (--api-key-env)")
        return urls

RETRY_STATUS = frozenset({408, 409, 429})
"""Besides 5xx: statuses that say "try again", not "your request is wrong"."""
REST_CAP_S = 30.0


@dataclass
class _Endpoint:
    url: str
    client: Any
    in_flight: int = 0
    sent: int = 0
    failures: int = 0
    rest_until: float = 0.0


@dataclass
class _Outcome:
    retry: bool
    reason: str
    retry_after: float | None = None


@dataclass
class OpenAIBackend(Generator):
    capabilities: ClassVar[frozenset[str]] = frozenset({"generate", "first_token_logprobs"})
    endpoints: list[_Endpoint] = field(default_factory=list)
    name: str = ""
    concurrency: int = 16
    rpm: float | None = None
    max_retries: int = 6
    backoff: Backoff = field(default_factory=Backoff)
    max_pixels: int | None = None
    temperature: float | None = 0.0
    top_logprobs: int = 0
    image_detail: str | None = None
    secret: str | None = field(default=None, repr=False)
    url_secrets: tuple[str, ...] = field(default=(), repr=False)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop, repr=False)

    def __post_init__(self) -> None:
        self._limiter = RateLimiter(self.rpm)
        self.payloads = Payloads(self.max_pixels)
        self._secrets = tuple(re.compile(re.escape(secret), re.IGNORECASE)
                              for secret in (self.secret, *self.url_secrets) if secret)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer every request; one that still fails after its retries comes back with `error`.

        In-flight requests are bounded by `concurrency`, so a batch smaller than that leaves the
        pipe part-empty: raise --batch-size to keep a fast server busy.
        """
        if not requests:
            return []
        return self.loop.run_until_complete(self._ask_all(requests))

    async def _ask_all(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        slots = asyncio.Semaphore(self.concurrency)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._ask(request, self.payloads.get(request.image), slots))
                         for request in requests]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _ask(self, request: GenerationRequest, image: asyncio.Future[bytes],
                   slots: asyncio.Semaphore) -> Generation:
        from classbench.models.api_http import encode_body

        body = encode_body(self._body(request), await image)
        attempt = 0
        while True:
            attempt += 1
            async with slots:
                await self._limiter.wait()
                endpoint = self._pick()
                endpoint.in_flight += 1
                endpoint.sent += 1
                started = perf_counter()
                try:
                    response = await endpoint.client.post("chat/completions", body)
                    generation = parse_completion(response, perf_counter() - started, attempt, self._scrub)
                except Exception as error:
                    outcome = self._classify(error, endpoint)
                else:
                    endpoint.failures = 0
                    return generation
                finally:
                    endpoint.in_flight -= 1
            self._rest(endpoint, outcome)
            if not outcome.retry or attempt > self.max_retries:
                tried = f"after {attempt} attempts" if attempt > 1 else "not retried"
                return Generation(text="", attempts=attempt, error=self._scrub(f"{outcome.reason} ({tried})"))
            await asyncio.sleep(self.backoff.delay(attempt, outcome.retry_after))

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        """The chat request; `IMAGE` stands for the image's data URL (`api_http.encode_body`)."""
        image: dict[str, Any] = {"url": IMAGE}
        if self.image_detail:
            image["detail"] = self.image_detail
        body: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": image},
                                                      {"type": "text", "text": request.prompt}]}],
            "max_completion_tokens": request.max_new_tokens,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        top_logprobs = request.top_logprobs or self.top_logprobs
        if top_logprobs:
            body.update(logprobs=True, top_logprobs=top_logprobs)
        return body

    def _classify(self, error: Exception, endpoint: _Endpoint) -> _Outcome:
        """Say whether a failed attempt is worth repeating; refuse the run outright when no
        request can succeed (a rejected key, a model the server does not serve)."""
        from classbench.models import api_http

        where = f" from {endpoint.url}" if len(self.endpoints) > 1 else ""
        if isinstance(error, api_http.StatusError):
            status = error.status
            message = error.message
            if status in (401, 403):
                raise UserError(self._scrub(
                    f"{endpoint.url} refused the API key (HTTP {status}: {message}). Set a valid key in the "
                    "environment variable named by --api-key-env (default OPENAI_API_KEY)."))
            if status == 404:
                raise UserError(self._scrub(
                    f"{endpoint.url} does not serve model {self.name!r} (HTTP 404: {message}). "
                    "Check --model openai:NAME against the server's GET /v1/models."))
            retry = status >= 500 or status in RETRY_STATUS
            return _Outcome(retry, f"HTTP {status}{where}: {message}", retry_after_s(error.headers))
        if isinstance(error, api_http.RequestTimeout):
            return _Outcome(True, f"timeout{where}")
        if isinstance(error, api_http.ConnectionFailed):
            return _Outcome(True, f"connection error{where}: {error}")
        if isinstance(error, (Malformed, api_http.MalformedBody, ValueError, TypeError, AttributeError)):
            return _Outcome(True, f"malformed response{where}: {type(error).__name__}: {error}")
        raise error

    def _pick(self) -> _Endpoint:
        """The least busy server that is not resting (all resting: the one that wakes first)."""
        now = time.monotonic()
        awake = [e for e in self.endpoints if e.rest_until <= now]
        if not awake:
            return min(self.endpoints, key=lambda e: e.rest_until)
        return min(awake, key=lambda e: (e.in_flight, e.sent))

    def _rest(self, endpoint: _Endpoint, outcome: _Outcome) -> None:
        """Rest a failing server so a dead one in a fleet stops drawing traffic (it fails fastest)."""
        if not outcome.retry or len(self.endpoints) == 1:
            return
        endpoint.failures += 1
        pause = min(REST_CAP_S, self.backoff.base_s * 2 ** (endpoint.failures - 1))
        endpoint.rest_until = time.monotonic() + max(pause, outcome.retry_after or 0.0)

    def _scrub(self, text: str) -> str:
        """Every string a server sends back, before it is stored or printed: the key and any secret of a
        --base-url's query, in any case, are replaced (a server may echo them, upper- or lowercased)."""
        for secret in self._secrets:
            text = secret.sub("[api key]", text)
        return text

    def check_server(self) -> None:
        """Fail at load, with what to do, when a server is unreachable, refuses the key, or does
        not list the model; a server without a model listing is trusted."""
        self.loop.run_until_complete(self._check_all())

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(endpoint) for endpoint in self.endpoints))

    async def _check(self, endpoint: _Endpoint) -> None:
        served = await self._served(endpoint)
        if served and self.name not in served:
            listed = ", ".join(served[:10]) + (", …" if len(served) > 10 else "")
            raise UserError(f"{endpoint.url} does not serve {self.name!r}; it serves: {listed}. "
                            f"Use --model openai:<one of those>.")

    async def _served(self, endpoint: _Endpoint, tries: int = 3) -> list[str]:
        """The server's model ids; empty when it has no listing (or it keeps failing with 5xx)."""
        from classbench.models import api_http

        for attempt in range(1, tries + 1):
            try:
                listing = (await endpoint.client.get("models")).get("data")
                return [str(model["id"]) for model in listing] if isinstance(listing, list) else []
            except api_http.StatusError as error:
                if error.status in (401, 403):
                    self._classify(error, endpoint)
                if error.status < 500 or attempt == tries:
                    return []
            except (TypeError, KeyError, api_http.MalformedBody):
                return []
            except (api_http.ConnectionFailed, api_http.RequestTimeout) as error:
                if attempt == tries:
                    raise UserError(self._scrub(
                        f"cannot reach {endpoint.url} ({type(error).__name__}: {error}). Is the server running, "
                        "and does --base-url end in /v1?")) from None
            await asyncio.sleep(self.backoff.delay(attempt))
        return []

    def close(self) -> None:
        if self.loop.is_closed():
            return
        for endpoint in self.endpoints:
            self.loop.run_until_complete(endpoint.client.close())
        self.loop.run_until_complete(asyncio.sleep(0))  # let aiohttp's connections finish closing
        self.loop.close()


def _public(url: str) -> str:
    """A URL without user:password, fit for provenance."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def load_openai(name: str, settings: OpenAISettings, device: str) -> OpenAIBackend:
    try:
        from classbench.models import api_http
    except ModuleNotFoundError as missing:
        raise UserError(f"--model openai:… needs {missing.name}: pip install 'classbench[openai]'") from None

    urls = list(settings.base_url or [OPENAI_URL])
    key_env = settings.api_key_env
    key = os.environ.get(key_env) or None
    if key is None and any(_public(url) == OPENAI_URL for url in urls):
        raise UserError(f"--model openai:{name} calls the OpenAI API, which needs a key: set the environment "
                        f"variable {key_env}, or pass --base-url for a local server (vLLM, SGLang, transformers serve)")
    prices = pricing.lookup(name, settings.price_in, settings.price_out)
    loop = asyncio.new_event_loop()
    headers = api_http.default_headers(key)
    endpoints = [_Endpoint(_public(url), api_http.ApiClient(url, headers, settings.timeout_s)) for url in urls]
    described: dict[str, Any] = {
        "base_urls": [endpoint.url for endpoint in endpoints],
        "api_key": f"from ${key_env}" if key else "none",
        "concurrency": settings.concurrency,
        "rpm": settings.rpm,
        "timeout_s": settings.timeout_s,
        "max_retries": settings.max_retries,
        "temperature": settings.temperature,
        "max_pixels": settings.max_pixels,
        "top_logprobs": settings.top_logprobs,
        "image_detail": settings.image_detail,
        "image_format": "the file's own bytes (JPEG, PNG, WebP) where they show the decoded picture, else PNG",
        **(prices.settings() if prices else {}),
    }
    backend = OpenAIBackend(
        model_id=f"openai:{name}",
        settings=described,
        endpoints=endpoints,
        name=name,
        concurrency=settings.concurrency,
        rpm=settings.rpm,
        max_retries=settings.max_retries,
        backoff=Backoff(base_s=settings.backoff_s),
        max_pixels=settings.max_pixels,
        temperature=settings.temperature,
        top_logprobs=settings.top_logprobs,
        image_detail=settings.image_detail,
        secret=key,
        url_secrets=tuple(secret for url in urls for secret in url_secrets(url)),
        loop=loop,
    )
    try:
        backend.check_server()
    except BaseException:
        backend.close()
        raise
    return backend
