"""Datasets by name: torchvision's own classes on tiny copies of their on-disk layouts, and what a run records."""

from __future__ import annotations

from pathlib import Path

import pytest

import catalogue_trees as trees
from classbench import runner
from classbench.datasets import open_dataset
from classbench.datasets.catalogue import CATALOGUE, catalogue_lines
from classbench.errors import ImageLoadError, UserError
from classbench.spec import RunSpec
from classbench.store import Store
from clip_helpers import colour_tree, tiny_model_folder

CASES = {
    # name: (builder, split, classes, images, the first sample's id or None for array images)
    "caltech101": (trees.caltech101, None, ["Faces easy", "accordion", "water lilly"], 6,
                   "caltech101/101_ObjectCategories/Faces_easy/image_0001.jpg"),
    "cifar10": (trees.cifar10, None, ["airplane", "automobile", "bird"], 6, "test/00000"),
    "cifar100": (trees.cifar100, "train", ["apple", "aquarium fish"], 2, "train/00000"),
    "food101": (trees.food101, None, ["apple pie", "beef tartare"], 3, "food-101/images/apple_pie/1005649.jpg"),
    "oxford_pets": (trees.oxford_pets, None, ["Abyssinian", "American Bulldog"], 3,
                    "oxford-iiit-pet/images/Abyssinian_1.jpg"),
    "flowers102": (trees.flowers102, None, ["canterbury bells", "hard-leaved pocket orchid", "pink primrose"], 3,
                   "flowers-102/jpg/image_00002.jpg"),
    "stl10": (trees.stl10, None, ["airplane", "bird", "truck"], 3, "test/00000"),
    "dtd": (trees.dtd, None, ["banded", "zigzagged"], 3, "dtd/dtd/images/banded/banded_0002.jpg"),
    "eurosat": (trees.eurosat, None, ["Annual Crop", "Sea Lake"], 3, "eurosat/2750/AnnualCrop/AnnualCrop_1.jpg"),
    "imagenet": (trees.imagenet, None, ["crane (n02012849)", "crane (n03126707)", "tench"], 3,
                 "val/n01440764/ILSVRC2012_val_00000001.JPEG"),
}


def test_every_catalogue_entry_has_a_layout_test() -> None:
    assert set(CATALOGUE) == set(CASES) | {"caltech256"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_entry_opens_its_torchvision_layout_with_readable_names(name: str, tmp_path: Path, monkeypatch) -> None:
    build, split, classes, count, first = CASES[name]
    trees.accept_any_checksum(monkeypatch)
    monkeypatch.chdir(tmp_path)
    root = build(tmp_path / "root")
    dataset = open_dataset(name, dataset_root=str(root), split=split)
    assert dataset.classes == classes and len(dataset.samples) == count
    assert dataset.samples[0].id == first
    assert dataset.info["source"] == "catalogue" and dataset.info["library"].startswith("torchvision.datasets.")
    assert dataset.templates == CATALOGUE[name].templates
    for sample in dataset.samples:
        image = dataset.load(sample)
        assert image.mode == "RGB" and min(image.size) > 1


def test_caltech256_names_background_and_broken_images(tmp_path: Path) -> None:
    root = trees.caltech256(tmp_path, extra={1: 2})
    broken = root / "caltech256" / "256_ObjectCategories" / "002.american-flag" / "002_0001.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    (broken.parent / "notes.txt").write_text("torchvision counts only .jpg files")
    dataset = open_dataset("caltech256", dataset_root=str(root))
    assert len(dataset.classes) == 257 and len(dataset.samples) == 259
    assert {"ak47", "american flag", "dog", "faces easy", "clutter", "object 4"} <= set(dataset.classes)
    assert CATALOGUE["caltech256"].background == "clutter" and dataset.info["background"] == "clutter"
    by_id = {sample.id: sample for sample in dataset.samples}
    assert by_id["caltech256/256_ObjectCategories/257.clutter/257_0001.jpg"].label == "clutter"
    assert [s.label for s in dataset.samples if s.id.endswith("001.ak47/001_0003.jpg")] == ["ak47"]
    with pytest.raises(ImageLoadError, match="002_0001.jpg"):
        dataset.load(by_id["caltech256/256_ObjectCategories/002.american-flag/002_0001.jpg"])


def test_missing_root_or_layout_is_one_clear_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="needs --dataset-root DIR"):
        open_dataset("caltech256")
    with pytest.raises(UserError, match="no such folder; add --download"):
        open_dataset("dtd", dataset_root=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="expects food-101/images"):
        open_dataset("food101", dataset_root=str(tmp_path))
    with pytest.raises(UserError, match="cannot be downloaded"):
        open_dataset("imagenet", dataset_root=str(tmp_path), download=True)
    with pytest.raises(UserError, match="has the splits test, train"):
        open_dataset("cifar10", dataset_root=str(tmp_path), split="val")


def test_a_file_or_folder_of_that_name_wins_and_is_recorded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    colour_tree(tmp_path / "cifar10", per_class=1)
    spec = RunSpec.from_flat(dataset="cifar10", model="efficientnet-lite0")
    assert spec.dataset.source == str(tmp_path / "cifar10")
    dataset = open_dataset("cifar10")
    assert dataset.info == {"source": "folder", "shadows_catalogue_name": "cifar10"}
    with pytest.raises(UserError, match="--dataset-root applies to catalogue names"):
        open_dataset("cifar10", dataset_root=str(tmp_path))
    assert RunSpec.from_flat(dataset="dtd", model="efficientnet-lite0").dataset.source == "dtd"


def test_list_shows_every_entry() -> None:
    lines = catalogue_lines()
    assert all(any(line.startswith(name + " ") for line in lines) for name in CATALOGUE)
    assert any("clutter" in line for line in lines if line.startswith("caltech256"))


def test_a_catalogue_run_records_its_source_and_uses_the_published_templates(tmp_path: Path, monkeypatch) -> None:
    trees.accept_any_checksum(monkeypatch)
    monkeypatch.chdir(tmp_path)
    root = trees.cifar10(tmp_path / "data")
    model = f"clip:{tiny_model_folder('clip')}"
    recorded = {}
    for label, options in (("published", {}), ("override", {"templates": "a photo of a {}."})):
        spec = RunSpec.from_flat(dataset="cifar10", dataset_root=str(root), model=model, options=options, batch_size=4)
        runner.run(spec, tmp_path / label, log=lambda _: None)
        store = Store.open_existing(tmp_path / label)
        try:
            recorded[label] = (store.meta("dataset"), store.meta("model")["settings"], store.meta("strategy"),
                               store.meta("spec")["dataset"]["source"], len(store.predictions()))
        finally:
            store.close()
    dataset, settings, strategy, name, answered = recorded["published"]
    assert name == "cifar10" and answered == 6
    assert dataset["source"] == "catalogue" and dataset["templates"] == "cifar" and dataset["split"] == "test"
    assert settings["templates"] == "cifar" and strategy["zero_shot"]["templates_set"] == "cifar"
    assert len(strategy["zero_shot"]["templates"]) == 18
    _, settings, strategy, _, _ = recorded["override"]
    assert settings["templates"] == "custom" and strategy["zero_shot"]["templates"] == ["a photo of a {}."]


def test_a_folder_run_keeps_the_default_templates(tmp_path: Path) -> None:
    tree = colour_tree(tmp_path / "tree", per_class=1)
    spec = RunSpec.from_flat(dataset=str(tree), model=f"clip:{tiny_model_folder('clip')}", batch_size=4)
    runner.run(spec, tmp_path / "run", log=lambda _: None)
    store = Store.open_existing(tmp_path / "run")
    try:
        assert store.meta("model")["settings"]["templates"] == "default"
        assert store.meta("dataset")["source"] == "folder" and store.meta("dataset")["templates"] is None
    finally:
        store.close()


def test_the_html_report_finds_a_catalogue_runs_images(tmp_path: Path, monkeypatch) -> None:
    from classbench.report.gallery import Thumbnails

    monkeypatch.chdir(tmp_path)
    root = trees.dtd(tmp_path / "root")
    _, dataset, problem = Thumbnails().source({"dataset": "dtd", "dataset_root": str(root), "split": "test",
                                               "model": "efficientnet-lite0"})
    assert problem is None and dataset.load(dataset.samples[0]).mode == "RGB"
