"""Dataset sources and the sampler. `open_dataset` picks the source from what the path or name is."""

from __future__ import annotations

from pathlib import Path

from classbench.datasets.base import Dataset, FileDataset, Sample
from classbench.datasets.catalogue import CATALOGUE, is_catalogue_name
from classbench.datasets.sampler import Selection, read_class_list, select
from classbench.errors import UserError

__all__ = ["Dataset", "FileDataset", "Sample", "Selection", "open_dataset", "read_class_list", "select", "source_kind"]


def open_dataset(
    source: str,
    *,
    label_file: str | None = None,
    split: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    dataset_root: str | None = None,
    download: bool = False,
) -> Dataset:
    """Open `source`: a class-per-folder tree, a .csv/.jsonl manifest, `hf:NAME`, a saved HF dataset, or a
    catalogue name (`caltech256`, `cifar10`, …) when no file or folder of that name exists."""
    if is_catalogue_name(source):
        from classbench.datasets.catalogue import open_catalogue

        return open_catalogue(source, dataset_root, split, download)
    if dataset_root is not None or download:
        flag = "--dataset-root" if dataset_root is not None else "--download"
        raise UserError(f"{flag} applies to catalogue names ({', '.join(CATALOGUE)}); "
                        f"--dataset {source} is opened directly, so drop {flag}")
    dataset = _open_path(source_kind(source), source, label_file, split, image_column, label_column)
    if Path(source).name in CATALOGUE:
        dataset.info["shadows_catalogue_name"] = Path(source).name
    return dataset


def source_kind(source: str) -> str:
    """What `open_dataset` opens `source` as: `catalogue`, `huggingface`, `manifest` or `folder`.
    Raises UserError when it names no file, folder or catalogue entry, or a file that is no manifest."""
    if is_catalogue_name(source):
        return "catalogue"
    if source.startswith("hf:"):
        return "huggingface"
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"--dataset {source}: no such file or folder, nor a catalogue name "
                        "(`classbench datasets --list` shows them)")
    if path.is_file():
        if path.suffix.lower() in (".csv", ".jsonl"):
            return "manifest"
        raise UserError(f"--dataset {source}: a file dataset must be a .csv or .jsonl manifest with image,label columns")
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        return "huggingface"
    return "folder"


def _open_path(kind: str, source: str, label_file: str | None, split: str | None, image_column: str | None,
               label_column: str | None) -> Dataset:
    path = Path(source).expanduser()
    if kind == "huggingface":
        from classbench.datasets.huggingface import open_hf

        dataset = open_hf(source if source.startswith("hf:") else str(path), split, image_column, label_column)
    elif kind == "manifest":
        from classbench.datasets.manifest import open_manifest

        dataset = open_manifest(path, image_column, label_column)
    else:
        from classbench.datasets.folder import open_folder

        dataset = open_folder(path, Path(label_file) if label_file else None)
    dataset.info = {"source": kind, **dataset.info}
    return dataset
