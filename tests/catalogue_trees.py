"""Tiny copies of torchvision's on-disk dataset layouts, built in the test (never downloaded).

Each builder writes under ROOT exactly the files and names the torchvision class reads (its
`root` argument is ROOT), with a few small pictures per class. CIFAR, STL-10 and Flowers-102 are
checked by torchvision against the MD5 sums of the real downloads, which no tiny file can match:
`accept_any_checksum` makes those checks test only that the file exists (a fake, and the one
thing here that is not torchvision's own code path).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np

from trees import photo

CALTECH256_NAMED = {1: "ak47", 2: "american-flag", 3: "backpack", 56: "dog", 253: "faces-easy-101", 257: "clutter"}


def accept_any_checksum(monkeypatch) -> None:
    """torchvision's MD5 check of the real archives → an existence check (see the module docstring)."""
    import torchvision.datasets.cifar
    import torchvision.datasets.flowers102
    import torchvision.datasets.stl10

    def exists(path: str, md5: str | None = None) -> bool:
        return os.path.isfile(path)

    for module in (torchvision.datasets.cifar, torchvision.datasets.stl10, torchvision.datasets.flowers102):
        monkeypatch.setattr(module, "check_integrity", exists)


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(seed, (24, 20)).save(path, quality=90)


def caltech256(root: Path, per_class: int = 1, extra: dict[int, int] | None = None) -> Path:
    """All 257 folders, as torchvision numbers files by folder position: `NNN.name/NNN_XXXX.jpg`."""
    folder = root / "caltech256" / "256_ObjectCategories"
    for number in range(1, 258):
        name = f"{number:03d}.{CALTECH256_NAMED.get(number, f'object-{number}')}"
        for index in range(1, per_class + (extra or {}).get(number, 0) + 1):
            _jpeg(folder / name / f"{number:03d}_{index:04d}.jpg", number * 100 + index)
    return root


def caltech101(root: Path) -> Path:
    folder = root / "caltech101" / "101_ObjectCategories"
    for number, name in enumerate(("BACKGROUND_Google", "Faces_easy", "accordion", "water_lilly")):
        for index in range(1, 3):
            _jpeg(folder / name / f"image_{index:04d}.jpg", number * 10 + index)
    return root


def _pickle(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(value, handle)


def _pixels(count: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 3 * size * size), dtype=np.uint8)


def cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for index in range(1, 6):
        _pickle(folder / f"data_batch_{index}", {"data": _pixels(2, 32, index), "labels": [0, 1]})
    _pickle(folder / "test_batch", {"data": _pixels(6, 32, 9), "labels": [0, 1, 2, 0, 1, 2]})
    _pickle(folder / "batches.meta", {"label_names": names})
    return root


def cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    _pickle(folder / "train", {"data": _pixels(2, 32, 1), "fine_labels": [0, 1]})
    _pickle(folder / "test", {"data": _pixels(4, 32, 2), "fine_labels": [0, 1, 1, 0]})
    _pickle(folder / "meta", {"fine_label_names": ["apple", "aquarium_fish"]})
    return root


def food101(root: Path) -> Path:
    base = root / "food-101"
    meta = {"apple_pie": ["apple_pie/1005649", "apple_pie/1011328"], "beef_tartare": ["beef_tartare/100"]}
    for seed, image in enumerate(image for images in meta.values() for image in images):
        _jpeg(base / "images" / f"{image}.jpg", seed)
    (base / "meta").mkdir(parents=True)
    (base / "meta" / "test.json").write_text(json.dumps(meta))
    (base / "meta" / "train.json").write_text(json.dumps({}))
    return root


def oxford_pets(root: Path) -> Path:
    base = root / "oxford-iiit-pet"
    rows = [("Abyssinian_1", 1, 1), ("Abyssinian_2", 1, 1), ("american_bulldog_10", 2, 2)]
    for seed, (image, _, _) in enumerate(rows):
        _jpeg(base / "images" / f"{image}.jpg", seed)
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "test.txt").write_text("".join(f"{i} {c} {s} 1\n" for i, c, s in rows))
    return root


def flowers102(root: Path) -> Path:
    from scipy.io import savemat

    base = root / "flowers-102"
    for index in range(1, 7):
        _jpeg(base / "jpg" / f"image_{index:05d}.jpg", index)
    savemat(base / "imagelabels.mat", {"labels": np.array([1, 1, 2, 2, 3, 3])})
    savemat(base / "setid.mat", {"trnid": np.array([1, 3]), "valid": np.array([5, 6]), "tstid": np.array([2, 4, 6])})
    return root


def stl10(root: Path) -> Path:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for name in ("train_X.bin", "train_y.bin", "unlabeled_X.bin"):
        (folder / name).write_bytes(b"")
    _pixels(3, 96, 3).tofile(folder / "test_X.bin")
    np.array([1, 2, 10], dtype=np.uint8).tofile(folder / "test_y.bin")
    (folder / "class_names.txt").write_text("\n".join(
        ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]) + "\n")
    return root


def dtd(root: Path) -> Path:
    data = root / "dtd" / "dtd"
    listed = ["banded/banded_0002.jpg", "banded/banded_0004.jpg", "zigzagged/zigzagged_0010.jpg"]
    for seed, image in enumerate(listed):
        _jpeg(data / "images" / image, seed)
    (data / "labels").mkdir(parents=True)
    (data / "labels" / "test1.txt").write_text("\n".join(listed) + "\n")
    return root


def eurosat(root: Path) -> Path:
    for seed, name in enumerate(("AnnualCrop", "SeaLake", "AnnualCrop")):
        _jpeg(root / "eurosat" / "2750" / name / f"{name}_{seed + 1}.jpg", seed)
    return root


def imagenet(root: Path) -> Path:
    import torch

    wnids = {"n01440764": ("tench", "Tinca tinca"), "n02012849": ("crane",), "n03126707": ("crane",)}
    root.mkdir(parents=True, exist_ok=True)
    torch.save((wnids, list(wnids)), root / "meta.bin")
    for seed, wnid in enumerate(wnids):
        _jpeg(root / "val" / wnid / f"ILSVRC2012_val_{seed + 1:08d}.JPEG", seed)
    return root
