"""Dataset sources and the sampler. `open_dataset` picks the source from what the path is."""

from __future__ import annotations

from pathlib import Path

from classbench.datasets.base import Dataset, FileDataset, Sample
from classbench.datasets.sampler import Selection, select
from classbench.errors import UserError

__all__ = ["Dataset", "FileDataset", "Sample", "Selection", "open_dataset", "select"]


def open_dataset(
    source: str,
    *,
    label_file: str | None = None,
    split: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> Dataset:
    """Open `source`: a class-per-folder tree, a .csv/.jsonl manifest, `hf:NAME` or a saved HF dataset."""
    if source.startswith("hf:"):
        from classbench.datasets.huggingface import open_hf

        return open_hf(source, split, image_column, label_column)
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"--dataset {source}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() in (".csv", ".jsonl"):
            from classbench.datasets.manifest import open_manifest

            return open_manifest(path, image_column, label_column)
        raise UserError(f"--dataset {source}: a file dataset must be a .csv or .jsonl manifest with image,label columns")
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        from classbench.datasets.huggingface import open_hf

        return open_hf(str(path), split, image_column, label_column)
    from classbench.datasets.folder import open_folder

    return open_folder(path, Path(label_file) if label_file else None)
