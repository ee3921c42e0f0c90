"""What crosses module lines during a run: plain records of questions asked and images decided.

Strategies yield them, the runner writes them through the store, metrics read them back; none of
these modules needs another's internals to exchange them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

UNREADABLE = "unreadable image: "
"""Error prefix of an image that could not be decoded: final, never retried."""
MODEL_ERROR = "model error: "
"""Error prefix of an image the model failed on: the next run of the same folder asks it again."""
REFUSED = "model refused the image: "
"""Error prefix of an image the model failed on twice, in two runs, with the same error: final (see
`settled_failure`)."""

_TRANSIENT = re.compile(r"connect|timeout|timed out|rate.?limit|unavailable|server.?error|memory|OSError|IOError|"
                        r"BrokenPipe|APIError|HTTP|overloaded|interrupted|\b(?:status|code)\D{0,3}(?:429|5\d\d)\b",
                        re.IGNORECASE)


def settled_failure(previous: str | None, current: str) -> str:
    """The error to record for an image the model failed on again (`current`, a MODEL_ERROR).

    A model error is asked again by the next run of the folder. When that run fails on the image
    with exactly the same error, the failure is deterministic (a processor refusing the image's
    shape, say): it is recorded once more as REFUSED and never asked again, so a run can complete.
    An error that names the environment (network, timeouts, rate limits, memory, a server's 5xx)
    is never settled: a later run, on a better day, asks again.
    """
    if previous != current or not current.startswith(MODEL_ERROR) or _TRANSIENT.search(current):
        return current
    return REFUSED + current[len(MODEL_ERROR):]


@dataclass(frozen=True)
class Question:
    """One question asked of a model about one image, and what came back."""

    key: str
    prompt: str | None = None
    answer: str | None = None
    label: str | None = None
    latency_s: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    detail: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Prediction:
    image: str
    label: str
    prediction: str | None
    status: str
    error: str | None = None
    latency_s: float | None = None
    detail: dict[str, Any] | None = field(default=None)


Record = tuple[str, list[Question], Prediction | None]
"""One image's new questions, and its prediction once it is decided: what executors hand back and
the runner writes."""


@dataclass(frozen=True)
class RunRecords:
    """What a strategy's summary reads: the run's label set, its provenance and every stored record."""

    classes: list[str]
    background: str | None
    strategy: dict[str, Any]
    """The strategy's stored description (`Strategy.describe()`: prompt, settings it used)."""
    questions: list[tuple[str, Question]]
    """(image, question) for every question asked, in the order they were stored."""
    predictions: list[Prediction]
