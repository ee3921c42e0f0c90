"""What a model backend is: something that loads once, says what it can do, and answers in batches.

Capabilities are methods a backend has, named in `capabilities`, so a strategy can refuse a
backend with a clear message instead of failing deep inside a loop:

- `classify`: images → probabilities over the backend's own labels (classic classifiers).
- `generate`: images + prompts → text (VLMs, API models).
- `score`: image + prompt + candidate answers → log-probabilities (`score`, see `ScoreRequest`).
- `shared_prefix`: several questions per image, each image computed once
  (`generate_shared([(image, prompts), …], max_new_tokens, stop=None)` → answers per image), with
  the answers `generate` would give; with `stop`, an image's answers end at the first one it accepts.
- `embed`: images → feature vectors (for probes).
- `zero_shot`: images + class names → probabilities over those names (image-text models such as
  CLIP and SigLIP, which need no label mapping).
- `first_token_logprobs`: `generate` can be asked (`GenerationRequest.top_logprobs`) for the most
  likely first answer tokens and their log-probabilities (`Generation.first_token_logprobs`);
  whether the server behind it sends them is only known from its answers (`models/logprobs.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
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
    top_logprobs: int = 0
    """How many likely first answer tokens to return, for backends with `first_token_logprobs`;
    0: the backend's own setting."""


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
    """The likely first answer tokens → log-probability, the generated one included."""
    first_token: str | None = None
    """The first answer token as generated (where `first_token_logprobs` is set)."""


@dataclass(frozen=True)
class ScoreRequest:
    """Candidate answers to score for one image and one user prompt (the backend applies its chat template)."""

    image: Image.Image
    prompt: str
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class Scores:
    """Per candidate, in request order: the summed log-probability of its answer tokens (the end of the
    answer included) and how many tokens that sum covers, so a strategy can take the mean per token."""

    logprob: np.ndarray
    tokens: np.ndarray
    tokens_in: int | None = None
    latency_s: float | None = None


class Generator(Backend):
    """A backend that answers questions in words (VLMs, API models)."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"generate"})

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer a batch of requests, in order. Batching, padding and concurrency are the backend's business."""
        raise NotImplementedError


class ZeroShotModel(Backend):
    """An image-text model: it scores images against class names it is given at run time.

    Text embeddings depend only on the class names and prompt templates, so they are prepared once
    per label set (`prepare_classes`, cached as a file in the run folder) and reused for every batch.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"zero_shot", "embed"})

    def prepare_classes(self, class_names: Sequence[str], cache_dir: Path | None = None) -> dict[str, Any]:
        """Compute (or read back) the class text embeddings; returns what to record as provenance."""
        raise NotImplementedError

    def classify_classes(self, images: Sequence[Image.Image], class_names: Sequence[str]) -> np.ndarray:
        """Return an (n_images, n_classes) array of probabilities, columns in `class_names` order."""
        raise NotImplementedError

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an (n_images, dim) array of image features."""
        raise NotImplementedError
