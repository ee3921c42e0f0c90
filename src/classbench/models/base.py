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
