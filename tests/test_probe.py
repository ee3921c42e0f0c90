"""The few-shot probe: the seeded shot split, the saved probe, resume, and a real-weights check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classbench import metrics, runner
from classbench.datasets import open_dataset, select
from classbench.demo import demo_dataset
from classbench.errors import UserError
from classbench.spec import RunSpec
from classbench.store import Store
from clip_helpers import colour_tree, tiny_model_folder


def _ids(samples) -> set[str]:
    return {sample.id for sample in samples}


def test_shots_are_held_out_nested_and_leave_the_rest_unchanged(tmp_path: Path) -> None:
    dataset = open_dataset(str(colour_tree(tmp_path / "tree", per_class=7)))
    plain = select(dataset, per_class=4, seed=3)
    assert select(dataset, per_class=4, seed=3, shots=0) == plain
    held = select(dataset, per_class=4, seed=3, shots=2)
    assert len(held.shots) == 6 and {s.label for s in held.shots} == set(held.classes)
    assert not _ids(held.shots) & _ids(held.samples)
    assert _ids(held.shots) | _ids(held.samples) == _ids(select(dataset, per_class=6, seed=3).samples)
    assert _ids(select(dataset, per_class=2, seed=3, shots=2).shots) == _ids(held.shots)
    assert _ids(select(dataset, n_classes=2, seed=3, shots=2).shots) < _ids(held.shots)
    assert _ids(select(dataset, per_class=4, seed=4, shots=2).shots) != _ids(held.shots)


class _StopAfter(runner.Progress):
    """Interrupts the run after a number of written chunks, as Ctrl-C would."""

    def __init__(self, chunks: int) -> None:
        self.left = chunks

    def advance(self, count: int) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt


def test_probe_is_saved_reused_on_resume_and_predicts_like_an_uninterrupted_run(tmp_path: Path) -> None:
    tree = colour_tree(tmp_path / "tree", per_class=7)
    spec = RunSpec.from_flat(dataset=str(tree), model=f"clip:{tiny_model_folder('clip')}", strategy="probe", shots=3,
                   batch_size=3)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec, out, progress=_StopAfter(2), log=lambda _: None)
    saved = (out / "probe.npz").read_bytes()
    split = json.loads((out / "probe_split.json").read_text())
    resumed = runner.run(spec, out, log=lambda _: None)
    assert resumed.resumed and resumed.asked == resumed.total - 6
    assert (out / "probe.npz").read_bytes() == saved

    clean = tmp_path / "clean"
    runner.run(spec, clean, log=lambda _: None)
    stores = [Store.open_existing(folder) for folder in (out, clean)]
    try:
        strategy = stores[0].meta("strategy")
        first, second = ({p.image: (p.prediction, p.detail["scores"]) for p in s.predictions()} for s in stores)
    finally:
        for store in stores:
            store.close()
    assert strategy["reused_probe"] is True and strategy["shots_per_class"] == {
        "blue sky": 3, "green leaf": 3, "red apple": 3}
    assert first == second and len(first) == 12
    assert not {entry["image"] for entry in split["shots"]} & set(first)
    assert all(abs(sum(scores) - 1.0) < 1e-4 and len(scores) == 3 for _, scores in first.values())


def test_unreadable_shot_is_skipped_and_noted_and_two_classes_work(tmp_path: Path) -> None:
    tree = colour_tree(tmp_path / "tree", per_class=5)
    dataset = open_dataset(str(tree))
    spec = RunSpec.from_flat(dataset=str(tree), model=f"clip:{tiny_model_folder('clip')}", strategy="probe", classes=2,
                   shots=2, batch_size=4)
    broken = select(dataset, n_classes=2, seed=0, shots=2).shots[0]
    (tree / broken.id).write_bytes(b"not an image")
    out = tmp_path / "run"
    result = runner.run(spec, out, log=lambda _: None)
    split = json.loads((out / "probe_split.json").read_text())
    assert result.asked == result.total == 6
    assert [entry["image"] for entry in split["skipped"]] == [broken.id] and len(split["shots"]) == 3
    store = Store.open_existing(out)
    try:
        summary = metrics.compute(store)
    finally:
        store.close()
    assert summary["n_classes"] == 2 and summary["n_images"] == 6 and summary["invalid"] == 0


def test_probe_without_shots_is_refused(tmp_path: Path) -> None:
    tree = colour_tree(tmp_path / "tree", per_class=2)
    spec = RunSpec.from_flat(dataset=str(tree), model=f"clip:{tiny_model_folder('clip')}", strategy="probe", shots=0)
    with pytest.raises(UserError, match="--shots K"):
        runner.run(spec, tmp_path / "run", log=lambda _: None)


@pytest.mark.slow
def test_efficientnet_probe_beats_its_zero_shot_label_mapping_on_fashion_mnist(tmp_path: Path) -> None:
    """Real weights, real check: 5 shots per class against the ImageNet label mapping, same images."""
    summaries = {}
    for strategy in ("direct", "probe"):
        spec = RunSpec.from_flat(dataset=str(demo_dataset()), model="efficientnet-lite0", strategy=strategy, shots=5,
                       per_class=5, batch_size=25)
        runner.run(spec, tmp_path / strategy, log=lambda _: None)
        store = Store.open_existing(tmp_path / strategy)
        try:
            summaries[strategy] = metrics.write(store, tmp_path / strategy)
            images = {p.image for p in store.predictions()}
        finally:
            store.close()
        summaries[strategy]["images"] = images
    probe, direct = summaries["probe"], summaries["direct"]
    assert probe["images"] == direct["images"] and probe["n_images"] == 50
    shots = json.loads((tmp_path / "probe" / "probe_split.json").read_text())["shots"]
    assert len(shots) == 50 and not {entry["image"] for entry in shots} & probe["images"]
    assert probe["accuracy"] > direct["accuracy"] + 0.1, (probe["accuracy"], direct["accuracy"])
    assert probe["accuracy_ci95"][0] > 0.36
    assert probe["top5_accuracy"] >= probe["accuracy"]


def test_a_saved_probe_is_never_overwritten_by_a_changed_model(tmp_path: Path) -> None:
    from tinymodels.tiny_clip import build_tiny_clip

    tree = colour_tree(tmp_path / "tree", per_class=4)
    folder = build_tiny_clip(tmp_path / "model", seed=0)
    spec = RunSpec.from_flat(dataset=str(tree), model=f"clip:{folder}", strategy="probe", shots=2, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec, tmp_path / "run", progress=_StopAfter(1), log=lambda _: None)
    saved = (tmp_path / "run" / "probe.npz").read_bytes()
    build_tiny_clip(folder, seed=1)
    with pytest.raises(UserError, match="fitted on features of"):
        runner.run(spec, tmp_path / "run", log=lambda _: None)
    assert (tmp_path / "run" / "probe.npz").read_bytes() == saved
