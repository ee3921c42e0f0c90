"""Class-per-folder trees in Caltech256's layout: `ROOT/001.ak47/*.jpg`, `ROOT/257.clutter/…`."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from classbench.datasets.base import FileDataset, Sample
from classbench.datasets.labels import folder_label, read_alias_file
from classbench.errors import UserError
from classbench.images import is_image_path

DEFAULT_LABEL_FILE = "labels.yaml"


def open_folder(root: Path, label_file: Path | None = None) -> FileDataset:
    """Index a folder tree. Non-image files are skipped and counted, never opened.

    A `labels.yaml` at the root is read as the alias file unless another one is given.
    """
    if label_file is None and (root / DEFAULT_LABEL_FILE).is_file():
        label_file = root / DEFAULT_LABEL_FILE
    aliases = read_alias_file(label_file) if label_file else {}
    skipped: Counter[str] = Counter()
    folders = sorted((entry for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith(".")),
                     key=lambda entry: entry.name)
    if not folders:
        raise UserError(
            f"{root}: no class folders found. A folder dataset needs one sub-folder per class "
            "(e.g. 001.ak47/, 002.american-flag/) holding that class's images."
        )
    samples: list[Sample] = []
    folder_of: dict[str, str] = {}
    for entry in folders:
        label = aliases.get(entry.name) or aliases.get(folder_label(entry.name)) or folder_label(entry.name)
        if label in folder_of:
            raise UserError(
                f"{root}: folders {folder_of[label]!r} and {entry.name!r} both give the label {label!r}; "
                "rename one or give it another label in the alias file."
            )
        images = []
        for path in sorted(Path(entry.path).rglob("*")):
            if path.is_dir() or path.name.startswith("."):
                continue
            if is_image_path(path):
                images.append(path.relative_to(root).as_posix())
            else:
                skipped["non-image file"] += 1
        if not images:
            skipped["empty class folder"] += 1
            continue
        folder_of[label] = entry.name
        samples.extend(Sample(id=image, label=label) for image in images)
    for loose in root.iterdir():
        if loose.is_file() and is_image_path(loose):
            skipped["image outside a class folder"] += 1
    classes = sorted(folder_of)
    return FileDataset(name=root.name, classes=classes, samples=samples, skipped=skipped, root=root)
