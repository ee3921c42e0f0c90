"""Pacing for remote model servers: a request-rate cap, retry delays, and `Retry-After`.

Kept apart from the API backend so the policy is plain arithmetic that tests can check without a
server, and so any future remote backend reuses the same rules.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """At most `rpm` request starts per minute, spaced evenly rather than in bursts.

    Evenly spaced starts keep a server's per-minute window from filling in the first second and
    answering 429 for the rest of the minute; every attempt, retries included, takes a slot.
    """

    rpm: float | None
    _next: float = 0.0

    async def wait(self) -> None:
        if not self.rpm:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + 60.0 / self.rpm
        while (left := slot - time.monotonic()) > 0:  # the event loop may wake a sleeper early
            await asyncio.sleep(left)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits about base·2ⁿ⁻¹ (at most `cap_s`).

    The wait is drawn from [half, full] of that, so clients that failed together do not retry
    together; a server's `Retry-After` is a floor, because retrying sooner only earns another 429.
    """

    base_s: float = 1.0
    cap_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        full = min(self.cap_s, self.base_s * 2 ** max(0, attempt - 1))
        wait = self.rng.uniform(full / 2, full)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap_s))
        return wait


def retry_after_s(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds a server asked us to wait: `retry-after-ms`, or `Retry-After` as seconds or a date."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    milliseconds = lowered.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
