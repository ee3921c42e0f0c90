"""What every dataset source yields: samples (an image reference and its label) and the class list."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from classbench.images import load_image


@dataclass(frozen=True)
class Sample:
    """One labelled image. `id` is stable across machines: it keys the store and predictions.csv."""

    id: str
    label: str


@dataclass
class Dataset(ABC):
    name: str
    classes: list[str]
    samples: list[Sample]
    skipped: Counter[str] = field(default_factory=Counter)
    info: dict[str, Any] = field(default_factory=dict)
    """Where the dataset came from (`source`: folder, manifest, huggingface or catalogue, and the
    catalogue entry's library, root and split), recorded with the run."""
    templates: str | None = None
    """The name of the published prompt-template set for this dataset (`datasets/templates.py`), if any."""

    @abstractmethod
    def load(self, sample: Sample) -> Image.Image:
        """Decode one sample's image; raises ImageLoadError when it cannot be read."""

    def by_class(self) -> dict[str, list[Sample]]:
        groups: dict[str, list[Sample]] = {name: [] for name in self.classes}
        for sample in self.samples:
            groups[sample.label].append(sample)
        return groups


@dataclass
class FileDataset(Dataset):
    """Samples whose id is a path relative to `root`."""

    root: Path = Path(".")

    def load(self, sample: Sample) -> Image.Image:
        return load_image(self.root / sample.id)
