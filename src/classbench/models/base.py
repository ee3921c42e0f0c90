"""What a model backend is: something that loads once, says what it can do, and answers in batches.

Capabilities are methods a backend has, named in `capabilities`, so a strategy can refuse a
backend with a clear message instead of failing deep inside a loop:

- `classify`: images → probabilities over the backend's own labels (classic classifiers).
- `generate`: images + prompts → text (VLMs, API models).
- `score`: image + prompt + candidate answers → log-probabilities.
- `embed`: images → feature vectors (for probes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class BackendLabel:
    """One of a classifier's own output classes, with the synonyms that help map it."""

    name: str
    synonyms: tuple[str, ...] = ()
    definition: str = ""


@dataclass
class Backend:
    """Base of every backend. `describe()` goes into the run's provenance."""

    model_id: str
    revision: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def describe(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "revision": self.revision, "settings": self.settings}

    def peak_gpu_gb(self) -> float | None:
        return None

    def close(self) -> None:
        """Release memory; a backend is unusable afterwards."""


class Classifier(Backend):
    capabilities: ClassVar[frozenset[str]] = frozenset({"classify"})
    labels: Sequence[BackendLabel] = ()

    def classify(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an (n_images, n_labels) array of probabilities."""
        raise NotImplementedError


@dataclass(frozen=True)
class GenerationRequest:
    """One question about one image. `prompt` is the user text; the backend applies its chat template."""

    image: Image.Image
    prompt: str
    max_new_tokens: int = 10


@dataclass(frozen=True)
class Generation:
    """What came back. `error` is set (and `text` empty) when the question could not be answered."""

    text: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    latency_s: float | None = None
    attempts: int = 1
    error: str | None = None
    first_token_logprobs: dict[str, float] | None = None


class Generator(Backend):
    """A backend that answers questions in words (VLMs, API models)."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"generate"})

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer a batch of requests, in order. Batching, padding and concurrency are the backend's business."""
        raise NotImplementedError
