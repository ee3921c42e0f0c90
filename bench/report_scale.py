"""Reports, sweeps and stores at Caltech256 scale: printed figures, never asserted in tests.

1. Builds a sweep of 50 run folders (5 models × 10 class counts, 10…257 classes, 20 images per
   class, 200–5,140 images a run) written through the Store API with realistic rows: three
   closed-set VLMs (every question with its shuffled class list and prompt), a classic classifier
   and a CLIP model; accuracy falls with the class count and the errors gather on a few confusable
   pairs. The images are a real synthetic Caltech256-shaped tree (small PNGs), so the report's
   gallery has thumbnails to draw. Then it times `classbench report` and `classbench report --html`
   in fresh processes and prints their CPU seconds and file sizes.
2. Runs a finished 257-class run on a Caltech256-sized tree (30,607 files) again (nothing to do:
   the cost of a resume that has no work), then a real 4-point sweep (the shipped EfficientNet-Lite0 on a small tree), counting how often the
   dataset is scanned; then the same sweep again (nothing to do) and its HTML report, counting again.
3. Prints the bytes a closed-set question at 200 classes takes in the store: the plain row (every
   column's bytes as 0.1 wrote them) and the file's growth per question (VACUUMed).

Run it as `python bench/report_scale.py [--work DIR]`. It only uses the Store API that classbench
0.1 had too, so the same script measures the code before and after a change.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # tree builders live with the tests

from classbench.datasets import Dataset, Sample, open_dataset, select
from classbench.spec import RunSpec
from classbench.store import Prediction, Question, Store
from classbench.strategies.asking import seeded_order
from classbench.strategies.closed_set import DEFAULT_PROMPT

SIZES = (10, 25, 50, 75, 100, 125, 150, 175, 200, 257)
PER_CLASS = 20
MODELS = (("hf:Qwen/Qwen2-VL-7B-Instruct", "closed-set", 0.93, 29.0, 3.5),
          ("hf:llava-hf/llava-v1.6-mistral-7b-hf", "closed-set", 0.90, 28.0, 2.9),
          ("openai:gpt-4o", "closed-set", 0.94, None, 2.0),
          ("efficientnet-lite0", "direct", 0.70, 0.4, 57.5),
          ("clip:openai/clip-vit-base-patch32", "likelihood", 0.80, 1.2, 40.0))
PYTHON = sys.executable


def make_tree(root: Path, classes: int = max(SIZES), per_class: int = PER_CLASS) -> list[str]:
    """Caltech256's layout (`001.ak47/…`, `257.clutter/`): small real PNGs, distinct per image."""
    names = []
    rng = np.random.default_rng(0)
    for index in range(1, classes + 1):
        name = "clutter" if index == classes else f"object {index:03d}"
        folder = root / f"{index:03d}.{name.replace(' ', '-')}"
        folder.mkdir(parents=True, exist_ok=True)
        for image in range(per_class):
            pixels = rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / f"{index:03d}_{image:04d}.png")
        names.append(name.replace(" ", "-"))
    return names


def build_point(folder: Path, data: Dataset, dataset: Path, model: str, strategy: str, accuracy: float,
                gpu: float | None, speed: float, n_classes: int) -> None:
    """One run folder as the runner would leave it: spec, samples, questions, predictions, a session."""
    spec = RunSpec.from_flat(dataset=str(dataset), model=model, strategy=strategy, classes=n_classes,
                             per_class=PER_CLASS, background="clutter")
    selection = select(data, n_classes, PER_CLASS, 0, "clutter")
    classes = selection.classes
    folder.mkdir(parents=True, exist_ok=True)
    store = Store(folder / "run.sqlite")
    store.begin_or_resume(spec.identity(), selection.samples,
                          {"spec": spec.model_dump(mode="json"), "classes": classes, "background": "clutter",
                           "dataset": {"name": dataset.name, "n_images": len(selection.samples)}})
    store.set_meta({"model": {"model_id": model, "revision": "bench", "settings": {}},
                    "strategy": {"name": strategy}})
    store.start_session(device="cuda", batch_size=16)
    store.update_session(load_s=12.0, peak_gpu_gb=gpu)
    rng = random.Random(f"{model}/{n_classes}")
    hit = max(0.15, accuracy - 0.0006 * n_classes)
    confusable = {name: classes[(i + 1) % len(classes)] for i, name in enumerate(classes) if i % 7 == 0}
    with store.batch():
        for sample in selection.samples:
            roll = rng.random()
            if roll < hit:
                prediction = sample.label
            elif roll < hit + 0.02 * (strategy == "closed-set"):
                prediction = None
            elif sample.label in confusable and rng.random() < 0.7:
                prediction = confusable[sample.label]
            else:
                prediction = rng.choice(classes)
            questions = []
            if strategy == "closed-set":
                order = seeded_order(classes, 0, sample.id, "closed-set", 0)
                answer = prediction or "a dog"
                questions.append(Question(
                    "shuffle:0", DEFAULT_PROMPT.replace("{classes}", ", ".join(order)), answer, prediction,
                    1 / speed, 60 + 4 * len(classes), 3,
                    {"order": order, "position": order.index(prediction) if prediction else None,
                     "how": "exact" if prediction else None}))
                detail = {"votes": {prediction: 1} if prediction else {}, "agreement": 1.0 if prediction else 0.0}
            else:
                detail = None
            status = "ok" if prediction else "invalid"
            store.record(sample.id, questions, Prediction(sample.id, sample.label, prediction, status, None,
                                                          1 / speed, detail))
        store.add_work(images=len(selection.samples), seconds=len(selection.samples) / speed)
    store.close()


def build_sweep(work: Path) -> tuple[Path, Path]:
    dataset = work / "caltech256-like"
    if not dataset.exists():
        make_tree(dataset)
    sweep = work / "sweep"
    if not sweep.exists():
        data = open_dataset(str(dataset))
        for model, strategy, accuracy, gpu, speed in MODELS:
            for size in SIZES:
                folder = sweep / f"{model.replace('/', '-').replace(':', '-')}-{strategy}" / f"n{size}"
                build_point(folder, data, dataset, model, strategy, accuracy, gpu, speed, size)
    return dataset, sweep


def timed(command: list[str]) -> tuple[float, float, str]:
    """CPU seconds (user + system) and wall seconds of a command in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall, done.stdout


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) if folder.exists() else 0


def report_figures(work: Path, sweep: Path) -> None:
    runs = len(list(sweep.rglob("run.sqlite")))
    cpu, wall, _ = timed([PYTHON, "-m", "classbench", "report", str(sweep)])
    print(f"report (markdown), {runs} runs: {cpu:.1f} s CPU, {wall:.1f} s wall")
    page = work / "report" / "sweep.html"
    shutil.rmtree(page.parent, ignore_errors=True)
    cpu, wall, _ = timed([PYTHON, "-m", "classbench", "report", str(sweep), "--html", str(page)])
    plots = page.with_name(page.stem + "-plots")
    print(f"report --html, {runs} runs: {cpu:.1f} s CPU, {wall:.1f} s wall; "
          f"page {page.stat().st_size / 1e6:.2f} MB, plots folder {folder_bytes(plots) / 1e6:.2f} MB "
          f"({len(list(plots.glob('*'))) if plots.exists() else 0} files)")


def resume_figures(work: Path, images: int = 30607) -> None:
    """A finished 257-class run on a Caltech256-sized tree (30,607 files; empty, since a scan never
    opens them) run again: nothing to ask, so all it costs is overhead."""
    dataset = work / "caltech256-sized"
    if not dataset.exists():
        for index in range(images):
            number = index % max(SIZES) + 1
            folder = dataset / f"{number:03d}.{'clutter' if number == max(SIZES) else f'object-{number:03d}'}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:05d}.jpg").touch()
    folder = work / "finished-run"
    if not folder.exists():
        build_point(folder, open_dataset(str(dataset)), dataset, "efficientnet-lite0", "direct", 0.7, None, 50.0,
                    max(SIZES))
    cpu, wall, _ = timed([PYTHON, "-m", "classbench", "run", "--dataset", str(dataset), "--model", "efficientnet-lite0",
                          "--classes", str(max(SIZES)), "--per-class", str(PER_CLASS), "--background", "clutter",
                          "--out", str(folder), "--no-progress"])
    print(f"a finished {max(SIZES)}-class run ({max(SIZES) * PER_CLASS:,} of {images:,} images) run again: "
          f"{cpu:.1f} s CPU, {wall:.1f} s wall")


def scan_figures(work: Path) -> None:
    """Dataset scans of a real 4-point sweep, of the same sweep again (nothing to do), of its report."""
    from trees import make_tree as small_tree

    tree = work / "small-tree"
    if not tree.exists():
        small_tree(tree, per_class=2)
    script = """
import sys
from classbench.datasets import folder
scans = {"n": 0}
real = folder.open_folder
def counting(*args, **kwargs):
    scans["n"] += 1
    return real(*args, **kwargs)
folder.open_folder = counting
from classbench.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print("SCANS", scans["n"])
"""
    out = work / "scan-sweep"
    shutil.rmtree(out, ignore_errors=True)
    sweep = ["sweep", "--dataset", str(tree), "--model", "efficientnet-lite0", "--classes", "2,3,4,5",
             "--per-class", "2", "--batch-size", "8", "--out", str(out), "--no-progress"]
    for label, args in (("4-point sweep", sweep), ("the same sweep again (nothing to do)", sweep),
                        ("report --html of it", ["report", str(out), "--html", str(work / "scan-report.html")])):
        cpu, _, stdout = timed([PYTHON, "-c", script, *args])
        scans = [line.split()[1] for line in stdout.splitlines() if line.startswith("SCANS")]
        print(f"dataset scans, {label}: {scans[-1] if scans else '?'} ({cpu:.1f} s CPU)")


def store_figures(work: Path, n_classes: int = 200, n_questions: int = 500) -> None:
    """Bytes a closed-set question at 200 classes takes: the plain row, and the store file's growth."""
    classes = [f"object {i:03d}" for i in range(n_classes)]
    samples = [Sample(f"{i % n_classes + 1:03d}.object-{i % n_classes:03d}/{i:05d}.jpg", classes[i % n_classes])
               for i in range(n_questions)]
    sizes = []
    for count in (0, n_questions):
        folder = Path(tempfile.mkdtemp(dir=work))
        store = Store(folder / "run.sqlite")
        store.begin_or_resume({"bench": True}, samples, {"classes": classes})
        plain = 0
        with store.batch():
            for sample in samples[:count]:
                order = seeded_order(classes, 0, sample.id, "closed-set", 0)
                question = Question("shuffle:0", DEFAULT_PROMPT.replace("{classes}", ", ".join(order)), order[3],
                                    order[3], 0.31, 1024, 3, {"order": order, "position": 3, "how": "exact"})
                store.record(sample.id, [question], None)
                row = (sample.id, question.key, question.prompt, question.answer, question.label,
                       json.dumps(question.detail))
                plain += sum(len(str(value).encode()) for value in row) + 3 * 8
        store.close()
        db = sqlite3.connect(folder / "run.sqlite")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
        db.close()
        sizes.append((folder / "run.sqlite").stat().st_size)
        if count:
            print(f"a closed-set question at {n_classes} classes: plain row {plain / count:,.0f} bytes; "
                  f"the store grows {(sizes[1] - sizes[0]) / count:,.0f} bytes per question "
                  f"({count} questions, VACUUMed, index included)")
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep the built runs here (default: a temporary folder)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["report", "scan", "store"])
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import classbench

    print(f"classbench at {Path(classbench.__file__).parent}; store schema "
          f"{getattr(sys.modules['classbench.store'], 'SCHEMA_VERSION', '?')}")
    work = args.work or Path(tempfile.mkdtemp(prefix="classbench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    if "store" not in args.skip:
        store_figures(work)
    if "report" not in args.skip:
        started = time.perf_counter()
        _, sweep = build_sweep(work)
        print(f"built {len(list(sweep.rglob('run.sqlite')))} run folders in {time.perf_counter() - started:.0f} s "
              f"({folder_bytes(sweep) / 1e6:.0f} MB)")
        report_figures(work, sweep)
        resume_figures(work)
    if "scan" not in args.skip:
        scan_figures(work)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
