"""An explicit class list: exactly its classes, in its order for --classes N, with --background as ever."""

from __future__ import annotations

from pathlib import Path

import pytest

from classbench import runner, sweep
from classbench.datasets import read_class_list, select
from classbench.datasets.base import FileDataset, Sample
from classbench.errors import UserError
from classbench.spec import RunSpec
from classbench.store import Store
from clip_helpers import colour_tree, tiny_model_folder


def synthetic(n_classes: int = 12, per_class: int = 4) -> FileDataset:
    classes = [f"class {i:02d}" for i in range(n_classes)] + ["clutter"]
    samples = [Sample(f"{name}/{j:03d}.jpg", name) for name in classes for j in range(per_class)]
    return FileDataset(name="synthetic", classes=sorted(classes), samples=samples)


def test_the_list_decides_the_classes_and_their_order() -> None:
    dataset = synthetic()
    listed = ["class 07", "class 02", "class 11", "class 05"]
    chosen = select(dataset, per_class=2, seed=3, class_list=listed)
    assert chosen.classes == sorted(listed) and len(chosen.samples) == 8
    assert {s.label for s in chosen.samples} == set(listed)
    assert select(dataset, 2, seed=3, class_list=listed).classes == ["class 02", "class 07"]
    first_three = select(dataset, 3, per_class=2, seed=3, class_list=listed, background="clutter")
    assert first_three.classes == ["class 02", "class 07", "clutter"] and first_three.background == "clutter"
    seeded = select(dataset, 4, per_class=2, seed=3)
    assert seeded.classes != chosen.classes  # without a list: the seeded subset, as before


def test_each_class_keeps_the_images_it_has_without_a_list() -> None:
    dataset = synthetic()
    listed = select(dataset, per_class=2, seed=5, class_list=["class 03", "class 09"], shots=1)
    everything = select(dataset, per_class=2, seed=5, shots=1)
    for name in ("class 03", "class 09"):
        assert {s.id for s in listed.samples if s.label == name} == \
            {s.id for s in everything.samples if s.label == name}
        assert [s.id for s in listed.shots if s.label == name] == [s.id for s in everything.shots if s.label == name]


def test_file_format_folder_names_and_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("\ufeff# the classes of table 2\n001.class-04\n\nclass 01\n")
    assert read_class_list(path) == ["001.class-04", "class 01"]
    assert select(synthetic(), class_list=read_class_list(path)).classes == ["class 01", "class 04"]
    with pytest.raises(UserError, match="not classes of synthetic: tiger"):
        select(synthetic(), class_list=["class 01", "tiger"])
    with pytest.raises(UserError, match="a second time"):
        select(synthetic(), class_list=["class 01", "class 01"])
    with pytest.raises(UserError, match="the class list names 2 classes"):
        select(synthetic(), 3, class_list=["class 01", "class 02"])
    with pytest.raises(UserError, match="--class-list .*missing.txt"):
        read_class_list(tmp_path / "missing.txt")


def test_a_run_and_a_sweep_take_the_list(tmp_path: Path) -> None:
    tree = colour_tree(tmp_path / "tree", per_class=2)
    listed = tmp_path / "classes.txt"
    listed.write_text("blue sky\n02.green_leaf\n")
    spec = RunSpec.from_flat(dataset=str(tree), model=f"clip:{tiny_model_folder('clip')}", class_list=str(listed),
                   batch_size=4)
    runner.run(spec, tmp_path / "run", log=lambda _: None)
    store = Store.open_existing(tmp_path / "run")
    try:
        assert store.meta("classes") == ["blue sky", "green leaf"]
        assert {p.label for p in store.predictions()} == {"blue sky", "green leaf"}
    finally:
        store.close()
    sweep.check_sizes(spec, [1, 2])
    with pytest.raises(UserError, match="sweep point N=3: --classes 3: the class list names 2"):
        sweep.check_sizes(spec, [2, 3])
