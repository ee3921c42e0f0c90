"""Dataset sources: Caltech-style folders, manifests, Hugging Face datasets; labels and skipping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classbench.datasets import open_dataset
from classbench.datasets.labels import folder_label
from classbench.errors import ImageLoadError, UserError
from trees import add_broken, make_tree, photo


@pytest.mark.parametrize(("folder", "label"), [
    ("001.ak47", "ak47"),
    ("002.american-flag", "american flag"),
    ("253.faces-easy-101", "faces easy"),
    ("257.clutter", "clutter"),
    ("045.computer-keyboard", "computer keyboard"),
    ("snow_mobile", "snow mobile"),
    ("101", "101"),
    ("3d-glasses", "3d glasses"),
])
def test_folder_label_rule(folder: str, label: str) -> None:
    assert folder_label(folder) == label


def test_caltech_tree_with_junk(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "caltech", per_class=3)
    (root / "004.empty").mkdir()
    (root / "001.ak47" / "notes.txt").write_text("not an image")
    (root / "001.ak47" / ".DS_Store").write_bytes(b"\0")
    (root / "README.md").write_text("loose file at the root")
    broken = add_broken(root / "002.american-flag")
    dataset = open_dataset(str(root))
    assert "empty" not in dataset.classes
    assert dataset.classes == sorted(["ak47", "american flag", "backpack", "baseball bat", "faces easy",
                                      "binoculars", "birdbath", "clutter"])
    assert dataset.skipped["non-image file"] == 1
    assert dataset.skipped["empty class folder"] == 1
    flags = [s for s in dataset.samples if s.label == "american flag"]
    assert len(flags) == 3 + len(broken)
    failures = []
    for sample in flags:
        try:
            assert dataset.load(sample).mode == "RGB"
        except ImageLoadError as error:
            failures.append(Path(sample.id).name)
            assert sample.id in str(error)
    assert sorted(failures) == sorted(broken)


def test_alias_file_overrides_labels(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", folders=("001.ak47", "002.american-flag"), per_class=1, background=False)
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("001.ak47: rifle\namerican flag: stars and stripes\n")
    assert open_dataset(str(root), label_file=str(aliases)).classes == ["rifle", "stars and stripes"]
    (root / "labels.yaml").write_text("002.american-flag: flag\n")
    assert open_dataset(str(root)).classes == ["ak47", "flag"]


def test_two_folders_with_one_label_is_an_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", folders=("001.dog", "002.dog"), per_class=1, background=False)
    with pytest.raises(UserError, match="both give the label 'dog'"):
        open_dataset(str(root))


def test_csv_and_jsonl_manifests(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    for index in range(4):
        photo(index).save(tmp_path / "img" / f"{index}.png")
    (tmp_path / "list.csv").write_text("image,label,extra\nimg/0.png,cat,x\nimg/1.png,dog,y\nimg/2.png,cat,z\n")
    dataset = open_dataset(str(tmp_path / "list.csv"))
    assert dataset.classes == ["cat", "dog"]
    assert dataset.load(dataset.samples[1]).size == (40, 32)
    lines = [json.dumps({"file": f"img/{i}.png", "y": "odd" if i % 2 else "even"}) for i in range(4)]
    (tmp_path / "list.jsonl").write_text("\n".join(lines) + "\n\n")
    dataset = open_dataset(str(tmp_path / "list.jsonl"), image_column="file", label_column="y")
    assert [s.label for s in dataset.samples] == ["even", "odd", "even", "odd"]


def test_manifest_errors_say_where(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("image,label\na.png,cat\nb.png,\n")
    with pytest.raises(UserError, match=r"bad.csv:3: no value for column 'label'"):
        open_dataset(str(tmp_path / "bad.csv"))
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png", "label": "x"}\n{oops\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        open_dataset(str(tmp_path / "bad.jsonl"))


def test_missing_manifest_image_is_a_per_image_failure(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("image,label\nmissing.png,cat\n")
    dataset = open_dataset(str(tmp_path / "list.csv"))
    with pytest.raises(ImageLoadError, match="not found"):
        dataset.load(dataset.samples[0])


def test_saved_huggingface_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["apple", "pear"])})
    table = datasets.Dataset.from_dict({"img": [photo(i) for i in range(4)], "y": [0, 1, 1, 0]}, features=features)
    table.save_to_disk(str(tmp_path / "saved"))
    dataset = open_dataset(str(tmp_path / "saved"))
    assert dataset.classes == ["apple", "pear"]
    assert [s.label for s in dataset.samples] == ["apple", "pear", "pear", "apple"]
    assert dataset.load(dataset.samples[2]).mode == "RGB"


def test_bad_sources_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file or folder"):
        open_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class folders"):
        open_dataset(str(tmp_path / "empty"))
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(UserError, match="manifest"):
        open_dataset(str(tmp_path / "x.txt"))
