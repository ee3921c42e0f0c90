"""The HTTP side of `openai:` models: one pooled aiohttp session per server, JSON through orjson.

The official `openai` client spends about 1.5 ms of CPU per request on building, validating and
transforming a chat completion; a question needs one POST and one parsed dict, which aiohttp
and orjson do in about a tenth of that. What users rely on from the official client is kept: the
URL is `<base-url>/chat/completions` (and `/models`), the key goes in `Authorization: Bearer`,
`OPENAI_ORG_ID` and `OPENAI_PROJECT_ID` become the `OpenAI-Organization` and `OpenAI-Project`
headers, and the proxy variables (`HTTPS_PROXY`, `NO_PROXY`, …) are honoured, looked up once per
server rather than per request (aiohttp's `trust_env` costs two thread hops a request), and TLS
trusts the system's certificates (`SSL_CERT_FILE`, `SSL_CERT_DIR` included). Nothing here
retries: the backend's retry policy is the only one, so every attempt is counted.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from classbench.models.api_payload import IMAGE

_IMAGE_JSON = orjson.dumps(IMAGE)
ORGANIZATION_ENV = "OPENAI_ORG_ID"
PROJECT_ENV = "OPENAI_PROJECT_ID"


class StatusError(Exception):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.headers = headers


class ConnectionFailed(Exception):
    """No answer: the connection could not be made, or broke before the answer was complete."""


class RequestTimeout(Exception):
    """No complete answer within the timeout."""


class MalformedBody(Exception):
    """A 2xx answer whose body is not the JSON object it should be."""


def default_headers(key: str | None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of every request, as the official client sends them (bar its telemetry)."""
    environ = dict(os.environ) if environ is None else environ
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "classbench"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if environ.get(ORGANIZATION_ENV):
        headers["OpenAI-Organization"] = environ[ORGANIZATION_ENV]
    if environ.get(PROJECT_ENV):
        headers["OpenAI-Project"] = environ[PROJECT_ENV]
    return headers


@dataclass
class ApiClient:
    """One server: a keep-alive connection pool that lives on the backend's event loop."""

    base_url: str
    headers: dict[str, str] = field(repr=False)
    """They hold the key: never in a repr."""
    timeout_s: float = 60.0
    session: aiohttp.ClientSession | None = field(default=None, repr=False)

    def _session(self) -> aiohttp.ClientSession:
        """Made on first use, inside the running loop, as aiohttp requires."""
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, ssl=tls_context())
            proxy, proxy_auth = env_proxy(self.base_url)
            self.session = aiohttp.ClientSession(
                connector=connector, headers=self.headers, proxy=proxy, proxy_auth=proxy_auth,
                cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                skip_auto_headers=("Accept-Encoding",))
        return self.session

    async def post(self, path: str, body: bytes) -> dict[str, Any]:
        return await self._request("POST", path, body)

    async def get(self, path: str) -> dict[str, Any]:
        return await self._request("GET", path, None)

    async def _request(self, method: str, path: str, data: bytes | None) -> dict[str, Any]:
        url = join(self.base_url, path)
        try:
            # Redirects are followed, as the official client follows them.
            async with self._session().request(method, url, data=data) as response:
                payload = await response.read()
                if not 200 <= response.status < 300:
                    raise StatusError(response.status, error_message(payload, response.reason), dict(response.headers))
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer in {self.timeout_s:g}s") from None
        except aiohttp.ClientError as error:
            raise ConnectionFailed(f"{type(error).__name__}: {error}") from None
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError as error:
            raise MalformedBody(f"not JSON ({error}): {payload[:200]!r}") from None
        if not isinstance(parsed, dict):
            raise MalformedBody(f"not a JSON object: {payload[:200]!r}")
        return parsed

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


def join(base_url: str, path: str) -> str:
    """`path` under the base URL, its query kept (`…/v1?api-version=1` + `chat/completions`)."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, f"{parts.path.rstrip('/')}/{path}", parts.query, ""))


def encode_body(body: dict[str, Any], image: bytes) -> bytes:
    """`body` as JSON with its `IMAGE` value replaced by `image` (an encoded JSON string).

    An image is tens of kilobytes of base64 that JSON would scan for characters to escape on every
    question; it is made a JSON string once (`api_payload.Payloads`) and spliced in. The image comes
    before the prompt, so the first `IMAGE` is the image's, whatever the prompt says."""
    return orjson.dumps(body).replace(_IMAGE_JSON, image, 1)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The system's trusted certificates; certifi's bundle as well where the system lists none (a
    python.org build on macOS before its "Install Certificates" step)."""
    context = ssl.create_default_context()
    if not context.cert_store_stats()["x509_ca"]:
        try:
            import certifi
        except ModuleNotFoundError:
            return context
        context.load_verify_locations(certifi.where())
    return context


def env_proxy(url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The proxy the environment names for `url` (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, less
    `NO_PROXY`), as the official client would use it."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None
    return str(proxy), auth


def error_message(payload: bytes, reason: str | None) -> str:
    """The server's own words for an error: `{"error": {"message": …}}` or the body, cut short."""
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        inner = parsed.get("error", parsed)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        if isinstance(inner, str) and inner:
            return inner[:300]
        if parsed.get("detail"):
            return str(parsed["detail"])[:300]
    text = payload.decode("utf-8", "replace").strip()
    return text[:300] or (reason or "no message")
