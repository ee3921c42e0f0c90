"""Open a dataset once for everything that shares its settings, and reach a run's images without
opening it at all.

Scanning a Caltech256-sized tree costs seconds (30,607 files; ten times that for a large one), and
a sweep used to scan once per point plus once more for its size check. `DatasetCache` opens each
distinct set of dataset settings once per process: a sweep's size check and all its points share
one scan. `image_source` serves a report's thumbnails from the image ids a run's store already
holds: a folder tree or manifest needs no scan, only its root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from classbench.datasets import Dataset, FileDataset, open_dataset, source_kind
from classbench.errors import UserError

SETTINGS = ("dataset", "dataset_root", "label_file", "split", "image_column", "label_column", "download")
"""The run settings that decide what `open_dataset` returns (and nothing else does), by their flat names."""


class DatasetCache:
    """Datasets opened in this process, by their settings."""

    def __init__(self) -> None:
        self._opened: dict[tuple[Any, ...], Dataset] = {}

    def open(self, settings: Any) -> Dataset:
        """The dataset for a run spec (or a mapping with the same names), opened on first use."""
        key = _key(settings)
        if key not in self._opened:
            source, root, label_file, split, image_column, label_column, download = key
            self._opened[key] = open_dataset(source, label_file=label_file, split=split, image_column=image_column,
                                             label_column=label_column, dataset_root=root, download=bool(download))
        return self._opened[key]


def image_source(settings: Any) -> Dataset:
    """Something that loads a stored run's images by their ids: for a folder tree or a manifest,
    the root the ids are relative to (no scan); a Hugging Face dataset is opened as usual.
    Raises UserError when the dataset is no longer where the run found it."""
    source, root, label_file, split, image_column, label_column, download = _key(settings)
    if source is None:
        raise UserError("the run does not name its dataset")
    if root is None and source_kind(source) in ("manifest", "folder"):
        path = Path(source).expanduser()
        return FileDataset(name=path.stem if path.is_file() else path.name, classes=[], samples=[],
                           root=path.parent if path.is_file() else path)
    return open_dataset(source, label_file=label_file, split=split, image_column=image_column,
                        label_column=label_column, dataset_root=root)


def _key(settings: Any) -> tuple[Any, ...]:
    """A run spec, or a stored spec (nested or 0.1's flat form), as the settings that open its dataset."""
    from classbench.spec import RunSpec, flat_view

    flat = flat_view(settings.model_dump(mode="json") if isinstance(settings, RunSpec) else dict(settings))
    return tuple(flat.get(name) for name in SETTINGS)
