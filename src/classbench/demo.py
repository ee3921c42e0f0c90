"""The demo dataset that ships inside the package (a seeded Fashion-MNIST sample, MIT)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def demo_dataset() -> Path:
    return Path(str(importlib.resources.files("classbench") / "demo_data" / "fashion-mnist"))
