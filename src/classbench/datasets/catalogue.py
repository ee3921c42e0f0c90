"""Datasets by name: the common classification sets, resolved through torchvision's own dataset classes.

`--dataset caltech256 --dataset-root DIR` hands DIR to `torchvision.datasets.Caltech256` as its
`root`, exactly as a torchvision user would, so the on-disk layout, the split files and the class
list are torchvision's and a folder it downloaded (`--download`) works as it is. classbench only
reads what the library decided: which images belong to the split, their labels and the class
names (made readable where they are folder names: `001.ak47` → `ak47`). Images the library keeps
as files are decoded by classbench's own loader (orientation, 16-bit, decompression bombs, a
broken file becomes a per-image failure); images it keeps as arrays (CIFAR, STL-10) are taken
from the library by index.

A name is a catalogue name only when no file or folder of that name exists (a folder `cifar10/`
in the working directory is a folder dataset), and the run records which it was. One table below
holds everything about an entry; torchvision is imported only when an entry is opened.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from classbench.datasets.base import Dataset, Sample
from classbench.datasets.labels import folder_label
from classbench.errors import ImageLoadError, UserError
from classbench.images import load_image, to_rgb

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
"""STL-10's classes, for a copy without its class_names.txt (torchvision then has no `classes`)."""


@dataclass(frozen=True)
class Entry:
    """One named dataset: which torchvision class opens it and how to read its labels and files."""

    title: str
    library_class: str
    """The class in `torchvision.datasets` that is given `--dataset-root` as its root."""
    layout: str
    """What the library expects under the root, for the error a user sees when it is missing."""
    labels: Callable[[Any], Sequence[int]]
    names: Callable[[Any], list[str]]
    """Readable class names, in the library's target-index order."""
    files: Callable[[Any], Sequence[Any]] | None = None
    """The image file of each index, where the library keeps files (None: images are arrays)."""
    splits: tuple[str, ...] = ("all",)
    """Accepted `--split` values, the default first; `all`: the dataset has no splits."""
    arguments: Callable[[str], dict[str, Any]] = field(default=lambda split: {})
    background: str | None = None
    """The dataset's documented background class (readable name), to pass as `--background`."""
    templates: str | None = None
    """The published CLIP prompt-template set (`datasets/templates.py`) for zero-shot models."""
    downloadable: bool = True


def _readable(names: Sequence[str]) -> list[str]:
    return [folder_label(str(name)) for name in names]


def _camel(names: Sequence[str]) -> list[str]:
    """EuroSAT's `AnnualCrop` → `Annual Crop`."""
    return [re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(name)) for name in names]


def _imagenet_names(source: Any) -> list[str]:
    """The first of each class's WordNet synonyms; the two names that repeat (crane, maillot) get their wnid."""
    first = [synonyms[0] if isinstance(synonyms, tuple) else str(synonyms) for synonyms in source.classes]
    repeated = {name for name in first if first.count(name) > 1}
    return [f"{name} ({wnid})" if name in repeated else name for name, wnid in zip(first, source.wnids)]


def _caltech256_files(source: Any) -> list[Path]:
    """The file names torchvision's Caltech256.__getitem__ opens: `NNN.name/NNN_XXXX.jpg`."""
    folder = Path(source.root) / "256_ObjectCategories"
    return [folder / source.categories[y] / f"{y + 1:03d}_{index:04d}.jpg" for y, index in zip(source.y, source.index)]


def _caltech101_files(source: Any) -> list[Path]:
    folder = Path(source.root) / "101_ObjectCategories"
    return [folder / source.categories[y] / f"image_{index:04d}.jpg" for y, index in zip(source.y, source.index)]


CATALOGUE: dict[str, Entry] = {
    "caltech101": Entry(
        "Caltech-101 (101 object classes; torchvision drops BACKGROUND_Google)", "Caltech101",
        "caltech101/101_ObjectCategories/<class>/image_0001.jpg",
        labels=lambda source: source.y, names=lambda source: _readable(source.categories), files=_caltech101_files,
        arguments=lambda split: {"target_type": "category"}, templates="caltech101"),
    "caltech256": Entry(
        "Caltech-256 (256 object classes and the 257.clutter background)", "Caltech256",
        "caltech256/256_ObjectCategories/001.ak47/001_0001.jpg … 257.clutter/257_0001.jpg",
        labels=lambda source: source.y, names=lambda source: _readable(source.categories), files=_caltech256_files,
        background="clutter"),
    "cifar10": Entry(
        "CIFAR-10 (10 classes, 32×32)", "CIFAR10", "cifar-10-batches-py/ (data_batch_1…5, test_batch, batches.meta)",
        labels=lambda source: source.targets, names=lambda source: _readable(source.classes),
        splits=("test", "train"), arguments=lambda split: {"train": split == "train"}, templates="cifar"),
    "cifar100": Entry(
        "CIFAR-100 (100 fine classes, 32×32)", "CIFAR100", "cifar-100-python/ (train, test, meta)",
        labels=lambda source: source.targets, names=lambda source: _readable(source.classes),
        splits=("test", "train"), arguments=lambda split: {"train": split == "train"}, templates="cifar"),
    "food101": Entry(
        "Food-101 (101 dishes)", "Food101", "food-101/images/<class>/<id>.jpg and food-101/meta/{train,test}.json",
        labels=lambda source: source._labels, names=lambda source: _readable(source.classes),
        files=lambda source: source._image_files, splits=("test", "train"),
        arguments=lambda split: {"split": split}, templates="food101"),
    "oxford_pets": Entry(
        "Oxford-IIIT Pet (37 cat and dog breeds)", "OxfordIIITPet",
        "oxford-iiit-pet/images/<Breed>_<n>.jpg and oxford-iiit-pet/annotations/{trainval,test}.txt",
        labels=lambda source: source._labels, names=lambda source: list(source.classes),
        files=lambda source: source._images, splits=("test", "trainval"),
        arguments=lambda split: {"split": split, "target_types": "category"}, templates="pets"),
    "flowers102": Entry(
        "Oxford 102 Flowers", "Flowers102", "flowers-102/jpg/image_00001.jpg, imagelabels.mat, setid.mat",
        labels=lambda source: source._labels, names=lambda source: list(source.classes),
        files=lambda source: source._image_files, splits=("test", "val", "train"),
        arguments=lambda split: {"split": split}, templates="flowers"),
    "stl10": Entry(
        "STL-10 (10 classes, 96×96)", "STL10", "stl10_binary/ (test_X.bin, test_y.bin, train_X.bin, …)",
        labels=lambda source: source.labels, names=lambda source: list(getattr(source, "classes", STL10_CLASSES)),
        splits=("test", "train"), arguments=lambda split: {"split": split}, templates="stl10"),
    "dtd": Entry(
        "Describable Textures (47 textures; partition 1)", "DTD", "dtd/dtd/images/<texture>/*.jpg and dtd/dtd/labels/test1.txt",
        labels=lambda source: source._labels, names=lambda source: list(source.classes),
        files=lambda source: source._image_files, splits=("test", "val", "train"),
        arguments=lambda split: {"split": split, "partition": 1}, templates="dtd"),
    "eurosat": Entry(
        "EuroSAT RGB (10 land-use classes from Sentinel-2)", "EuroSAT", "eurosat/2750/<Class>/<Class>_1.jpg",
        labels=lambda source: source.targets, names=lambda source: _camel(source.classes),
        files=lambda source: [path for path, _ in source.samples], templates="eurosat"),
    "imagenet": Entry(
        "ImageNet-1k (ILSVRC2012), from a local copy", "ImageNet",
        "meta.bin and val/<wnid>/*.JPEG (or ILSVRC2012_devkit_t12.tar.gz and ILSVRC2012_img_val.tar to unpack)",
        labels=lambda source: source.targets, names=_imagenet_names,
        files=lambda source: [path for path, _ in source.samples], splits=("val", "train"),
        arguments=lambda split: {"split": split}, templates="imagenet", downloadable=False),
}


@dataclass
class CatalogueDataset(Dataset):
    """A library dataset: sample ids are file paths under the root, or `split/index` for array images."""

    root: Path = Path(".")
    source: Any = None
    files: bool = True

    def load(self, sample: Sample) -> Image.Image:
        if self.files:
            return load_image(self.root / sample.id)
        try:
            image = self.source[int(sample.id.rsplit("/", 1)[1])][0]
        except Exception as error:
            raise ImageLoadError(f"{sample.id}: cannot decode image ({type(error).__name__}: {error})") from None
        if not isinstance(image, Image.Image):
            raise ImageLoadError(f"{sample.id}: the library gave {type(image).__name__}, not an image")
        return to_rgb(image)


def is_catalogue_name(source: str) -> bool:
    """True when `source` names a catalogue entry and no file or folder of that name exists."""
    return source in CATALOGUE and not Path(source).expanduser().exists()


def open_catalogue(name: str, root: str | None, split: str | None = None, download: bool = False) -> CatalogueDataset:
    entry = CATALOGUE[name]
    if root is None:
        raise UserError(f"--dataset {name}: a catalogue dataset needs --dataset-root DIR, the folder torchvision "
                        f"keeps it in (expected there: {entry.layout}){_download_hint(entry)}")
    folder = Path(root).expanduser().resolve()
    chosen = split or entry.splits[0]
    if chosen not in entry.splits:
        raise UserError(f"--split {chosen}: {name} has the splits {', '.join(entry.splits)}")
    if download and not entry.downloadable:
        raise UserError(f"--dataset {name} cannot be downloaded by torchvision; put {entry.layout} in {folder}")
    if not folder.is_dir() and not download:
        raise UserError(f"--dataset-root {root}: no such folder{_download_hint(entry)}")
    source = _construct(name, entry, folder, chosen, download)
    names = entry.names(source)
    duplicated = sorted({label for label in names if names.count(label) > 1})
    if duplicated:
        raise UserError(f"--dataset {name}: torchvision gives two classes the name {duplicated[0]!r}")
    labels = [names[int(target)] for target in entry.labels(source)]
    if entry.files is not None:
        ids = [_relative(path, folder) for path in entry.files(source)]
    else:
        ids = [f"{chosen}/{index:05d}" for index in range(len(labels))]
    samples = [Sample(id=image, label=label) for image, label in zip(ids, labels)]
    present = set(labels)
    return CatalogueDataset(
        name=name if chosen == "all" else f"{name}-{chosen}",
        classes=[label for label in sorted(names) if label in present],
        samples=samples,
        info={"source": "catalogue", "catalogue": name, "library": f"torchvision.datasets.{entry.library_class}",
              "root": str(folder), "split": chosen, "background": entry.background},
        templates=entry.templates,
        root=folder,
        source=source,
        files=entry.files is not None,
    )


def describe_entries() -> list[dict[str, Any]]:
    """What `classbench datasets --list` shows, one row per entry."""
    return [{"name": name, "title": entry.title, "library": f"torchvision.datasets.{entry.library_class}",
             "splits": list(entry.splits), "background": entry.background, "templates": entry.templates,
             "download": entry.downloadable, "layout": entry.layout} for name, entry in CATALOGUE.items()]


def _construct(name: str, entry: Entry, folder: Path, split: str, download: bool) -> Any:
    try:
        import torchvision.datasets as library
    except ImportError:
        raise UserError(f"--dataset {name} is opened by torchvision: pip install 'classbench[torch]'") from None
    arguments = {"root": str(folder), **entry.arguments(split)}
    if entry.downloadable:
        arguments["download"] = download
    try:
        return getattr(library, entry.library_class)(**arguments)
    except RuntimeError as error:
        raise UserError(f"--dataset {name}: torchvision cannot open it under {folder} ({error}); it expects "
                        f"{entry.layout}{_download_hint(entry)}") from None
    except OSError as error:
        if download:
            raise UserError(f"--dataset {name} --download: torchvision could not fetch it into {folder} "
                            f"({type(error).__name__}: {error}); fetch it on a machine with network and copy "
                            f"{entry.layout} there") from None
        raise UserError(f"--dataset {name}: torchvision failed to read {folder} ({type(error).__name__}: {error}); "
                        f"it expects {entry.layout}") from None
    except (ValueError, KeyError, IndexError) as error:
        raise UserError(f"--dataset {name}: torchvision failed to read {folder} ({type(error).__name__}: {error}); "
                        f"it expects {entry.layout}") from None


def _relative(path: Any, folder: Path) -> str:
    """The id of a file: its path under the root (torchvision builds paths from the root it was given)."""
    text, prefix = Path(path).as_posix(), folder.as_posix().rstrip("/") + "/"
    return text[len(prefix):] if text.startswith(prefix) else text


def _download_hint(entry: Entry) -> str:
    return "; add --download to fetch it there" if entry.downloadable else ""


def catalogue_lines() -> list[str]:
    """`classbench datasets --list`: one line per entry, then how to use one."""
    lines = [f"{'name':<12} {'splits (default first)':<22} {'background':<10} {'templates':<10} "
             f"{'torchvision class':<18} what"]
    for row in describe_entries():
        lines.append(f"{row['name']:<12} {','.join(row['splits']):<22} {row['background'] or '-':<10} "
                     f"{row['templates'] or 'default':<10} {row['library'].rsplit('.', 1)[1]:<18} {row['title']}"
                     f"{'' if row['download'] else ' (no --download)'}")
    lines.append("use: classbench run --dataset NAME --dataset-root DIR [--download] [--split S] …; "
                 "DIR is torchvision's root (`classbench datasets NAME --dataset-root DIR` shows what is found)")
    return lines
