"""A TEST backend for bench/scale_out.py, not a product backend: it answers each call of up to 8
images after a fixed sleep that stands for GPU time, so scaling can be measured on a CPU-only
machine. It is registered by the bench script (`sleepy`), never by classbench itself.

Its answers are a fixed function of the pixels (each image's mean colour picks a class), so runs
can be compared for identical predictions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import Field

from classbench.models.base import ZeroShotModel
from classbench.settings import Settings

CALL_SIZE = 8


class SleepySettings(Settings):
    sleep_ms: float = Field(default=50.0, ge=0, description="TEST backend: seconds/1000 each call of 8 images takes")


class SleepyModel(ZeroShotModel):
    def prepare_classes(self, class_names: Sequence[str], cache_dir: Path | None = None) -> dict[str, Any]:
        return {"test_backend": "sleeps instead of computing"}

    def classify_classes(self, images: Sequence[Image.Image], class_names: Sequence[str]) -> np.ndarray:
        calls = -(-len(images) // CALL_SIZE)
        time.sleep(calls * self.settings["sleep_ms"] / 1000)
        means = np.array([np.asarray(image, dtype=np.float64).mean() for image in images])
        picks = (means * 7919).astype(np.int64) % len(class_names)
        scores = np.full((len(images), len(class_names)), 0.1 / max(len(class_names) - 1, 1))
        scores[np.arange(len(images)), picks] = 0.9
        return scores


def load(name: str, settings: SleepySettings, device: str) -> SleepyModel:
    return SleepyModel(model_id=f"sleepy:{name}", settings={**settings.model_dump(), "device": "cpu"})
