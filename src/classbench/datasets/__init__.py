"""Dataset sources and the sampler. `open_dataset` picks the source from what the path or name is."""

from __future__ import annotations

from pathlib import Path

from classbench.datasets.base import Dataset, FileDataset, Sample
from classbench.datasets.catalogue import CATALOGUE, is_catalogue_name
from classbench.datasets.sampler import Selection, read_class_list, select
from classbench.errors import UserError

__all__ = ["Dataset", "FileDataset", "Sample", "Selection", "open_dataset", "read_class_list", "select"]


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
    kind, dataset = _open_path(source, label_file, split, image_column, label_column)
    dataset.info = {"source": kind, **dataset.info}
    if Path(source).name in CATALOGUE:
        dataset.info["shadows_catalogue_name"] = Path(source).name
    return dataset


def _open_path(source: str, label_file: str | None, split: str | None, image_column: str | None,
               label_column: str | None) -> tuple[str, Dataset]:
    if source.startswith("hf:"):
        from classbench.datasets.huggingface import open_hf

        return "huggingface", open_hf(source, split, image_column, label_column)
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"--dataset {source}: no such file or folder, nor a catalogue name "
                        "(`classbench datasets --list` shows them)")
    if path.is_file():
        if path.suffix.lower() in (".csv", ".jsonl"):
            from classbench.datasets.manifest import open_manifest

            return "manifest", open_manifest(path, image_column, label_column)
        raise UserError(f"--dataset {source}: a file dataset must be a .csv or .jsonl manifest with image,label columns")
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        from classbench.datasets.huggingface import open_hf

        return "huggingface", open_hf(str(path), split, image_column, label_column)
    from classbench.datasets.folder import open_folder

    return "folder", open_folder(path, Path(label_file) if label_file else None)
