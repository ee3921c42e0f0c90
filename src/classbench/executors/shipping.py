"""`--ship-images`: the driver sends each image file's original bytes to workers that cannot see
the dataset. Never a re-encoded image: the worker decodes the same bytes the same way
(`images.load_image_bytes`), so it sees exactly the picture a local run sees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from classbench.datasets.base import Dataset, FileDataset, Sample
from classbench.errors import UserError
from classbench.images import load_image_bytes


@dataclass(frozen=True)
class Shipped:
    name: str
    """What an error names: the file the driver read (as a local run names it)."""
    data: bytes | None
    """The file's bytes; None when there was no such file."""


def check(dataset: Dataset) -> None:
    """Refuse, before any work, a dataset whose images are not files (decoded arrays have no bytes to send)."""
    if _file_root(dataset) is None and not _is_hf(dataset):
        raise UserError(f"--ship-images sends image files' original bytes, but {dataset.name} holds decoded arrays: "
                        "drop --ship-images and let the workers read the dataset (--dataset-root on shared storage)")


def pack(dataset: Dataset, samples: list[Sample]) -> dict[str, Shipped]:
    return {sample.id: _pack(dataset, sample) for sample in samples}


def unpack(shipped: dict[str, Shipped], sample: Sample) -> Image.Image:
    item = shipped[sample.id]
    return load_image_bytes(item.data, item.name)


def _pack(dataset: Dataset, sample: Sample) -> Shipped:
    root = _file_root(dataset)
    if root is not None:
        path = root / sample.id
        try:
            return Shipped(str(path), path.read_bytes())
        except (FileNotFoundError, IsADirectoryError):
            return Shipped(str(path), None)
    return Shipped(sample.id, _hf_bytes(dataset, sample))


def _file_root(dataset: Dataset) -> Path | None:
    from classbench.datasets.catalogue import CatalogueDataset

    if isinstance(dataset, FileDataset) or isinstance(dataset, CatalogueDataset) and dataset.files:
        return Path(dataset.root)
    return None


def _is_hf(dataset: Dataset) -> bool:
    from classbench.datasets.huggingface import HFDataset

    return isinstance(dataset, HFDataset)


def _hf_bytes(dataset: Any, sample: Sample) -> bytes | None:
    """The encoded bytes a Hugging Face image column stores (its file when it stores a path)."""
    import datasets

    raw = getattr(dataset, "_raw_table", None)
    if raw is None:
        raw = dataset.table.cast_column(dataset.image_column, datasets.Image(decode=False))
        dataset._raw_table = raw
    cell = raw[int(sample.id.rsplit("/", 1)[1])][dataset.image_column] or {}
    if cell.get("bytes"):
        return cell["bytes"]
    path = cell.get("path")
    return Path(path).read_bytes() if path and Path(path).is_file() else None
