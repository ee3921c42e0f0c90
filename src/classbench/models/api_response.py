"""What comes back from an OpenAI-compatible server, read defensively, and what of a server URL may be kept.

A response is untrusted input: `parse_completion` turns a chat completion into a `Generation` and
anything else into `Malformed` (asked again), never another exception. A server URL may carry a
secret in its query (`?api_key=…`): it is sent, scrubbed from what servers send back, and replaced
in the run's record (`redact_url`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from classbench.models.base import Generation


class Malformed(Exception):
    """A response that is not a chat completion (cut-off JSON, no choices); worth asking again."""


def parse_completion(response: Any, latency: float, attempt: int, scrub: Callable[[str], str]) -> Generation:
    """A chat completion as a `Generation`. Anything else (a body of another shape, a `content` that is
    not text, malformed log-probabilities) raises `Malformed`, which is asked again: a server's answer
    can never crash the run or be stored half-read."""
    try:
        choices = response.get("choices") if isinstance(response, dict) else None
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise Malformed(f"not a chat completion: {scrub(str(response)[:200])!r}")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise Malformed(f"the answer's content is not text: {scrub(repr(content)[:200])}")
        usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
        first_token, logprobs = _first_token_logprobs(choice)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as error:
        raise Malformed(f"not a chat completion ({type(error).__name__}: {scrub(str(error)[:200])})") from None
    return Generation(
        text=scrub((content or "").strip()),
        tokens_in=_count(usage.get("prompt_tokens")),
        tokens_out=_count(usage.get("completion_tokens")),
        latency_s=latency,
        attempts=attempt,
        first_token_logprobs=logprobs,
        first_token=first_token and scrub(first_token),
    )


def _first_token_logprobs(choice: dict[str, Any]) -> tuple[str | None, dict[str, float] | None]:
    """The generated first token and the likely first tokens → log-probability (it included)."""
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None, None
    first = content[0]
    alternatives = {str(entry["token"]): float(entry["logprob"]) for entry in (first.get("top_logprobs") or [])}
    alternatives.setdefault(str(first["token"]), float(first["logprob"]))
    return str(first["token"]), alternatives


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


SECRET_QUERY = re.compile(r"key|token|secret|sig|password|auth|credential", re.IGNORECASE)
"""Names of --base-url query parameters that hold a secret (`?api_key=…`, `?sig=…`)."""


def url_secrets(url: str) -> list[str]:
    """The values of a URL's query parameters that look like secrets."""
    return [value for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True)
            if SECRET_QUERY.search(name) and value]


def redact_url(url: str) -> str:
    """A URL with the values of its secret-looking query parameters replaced, fit for the run's record."""
    parts = urlsplit(url)
    query = [(name, "[secret]" if SECRET_QUERY.search(name) and value else value)
             for name, value in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe="[]"), parts.fragment))
