"""How `--executor ray` scales: throughput with 1, 2, 4 and 8 Ray workers against one local process.

The model is a TEST backend (bench/sleepy_backend.py) that answers each call of 8 images after a
fixed sleep standing for GPU time, so the figure measures classbench's own overhead (chunking,
shipping chunks to actors, the driver's writes) and not this machine's 2 CPU cores. Throughput is
images answered per second of the answering loop (from the first chunk handed out to the last
one stored; model loading and Ray's start-up are excluded and printed apart). Efficiency at N
workers is throughput / (N × the local process's). The driver's own CPU time per answer says how
many workers one driver can feed.

    python bench/scale_out.py [--images 2560] [--batch-size 32] [--workers 1,2,4,8] [--sleep-ms 50]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from classbench import models, runner  # noqa: E402
from classbench.spec import RunSpec  # noqa: E402

models.REGISTRY["sleepy"] = models.Entry("sleepy_backend:load", "TEST backend: sleeps per call of 8 images",
                                         "sleepy:bench", "sleepy_backend:SleepySettings")
CLASSES = ("apple", "boat", "cloud", "drum", "eagle", "fern", "gate", "harp")


class Clock:
    """Times the answering loop (the runner's progress start → stop), in wall clock and driver CPU."""

    def start(self, total: int, done: int, description: str) -> None:
        self.wall, self.cpu, self.images = time.perf_counter(), time.process_time(), 0

    def advance(self, count: int) -> None:
        self.images += count

    def stop(self) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def make_tree(root: Path, images: int) -> Path:
    rng = np.random.default_rng(0)
    for index in range(images):
        folder = root / f"{index % len(CLASSES):03d}.{CLASSES[index % len(CLASSES)]}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{index:05d}.png")
    return root


def measure(tree: Path, out: Path, batch_size: int, sleep_ms: float, **runtime: object) -> tuple[Clock, float]:
    spec = RunSpec.from_flat(dataset=str(tree), model="sleepy:bench", sleep_ms=sleep_ms, batch_size=batch_size,
                             device="cpu", **runtime)
    clock = Clock()
    started = time.perf_counter()
    runner.run(spec, out, progress=clock, log=lambda _: None)
    return clock, time.perf_counter() - started - clock.wall


def predictions(out: Path) -> dict[str, str]:
    from classbench import metrics

    metrics.write_folder(out)
    with (out / "predictions.csv").open(newline="") as handle:
        return {row["image"]: row["prediction"] for row in csv.DictReader(handle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2560, help="10 chunks per worker at 8 workers")
    parser.add_argument("--batch-size", type=int, default=32, help="images per chunk (4 calls of 8)")
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--sleep-ms", type=float, default=50.0)
    args = parser.parse_args()
    counts = [int(part) for part in args.workers.split(",")]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"TEST backend: each call of 8 images sleeps {args.sleep_ms:g} ms, standing for GPU time; "
          "no real model runs.")
    print(f"{args.images} images of 24×24 px, chunks of {args.batch_size}, direct strategy; "
          f"{os.cpu_count()} CPU cores.")
    with tempfile.TemporaryDirectory(prefix="classbench-scale-") as folder:
        root = Path(folder)
        tree = make_tree(root / "tree", args.images)
        local, local_fixed = measure(tree, root / "local", args.batch_size, args.sleep_ms)
        reference = predictions(root / "local")
        base = local.images / local.wall
        ideal = args.images / (args.images / 8 * args.sleep_ms / 1000)
        print(f"\nlocal process: {base:.1f} images/s (the sleep alone allows {ideal:.1f}); "
              f"start-up {local_fixed:.1f}s; driver CPU {1000 * local.cpu / local.images:.2f} ms per image "
              "(answering included)")
        from classbench.executors.ray import connect

        started = time.perf_counter()
        connect(None, max(counts))
        print(f"Ray started in {time.perf_counter() - started:.1f}s (once, not counted)\n")
        print("| workers | images/s | efficiency | start-up s | driver CPU ms/image | same predictions |")
        print("|---|---|---|---|---|---|")
        driver_ms = []
        for count in counts:
            clock, fixed = measure(tree, root / f"ray{count}", args.batch_size, args.sleep_ms, executor="ray",
                                   workers=count)
            rate = clock.images / clock.wall
            driver_ms.append(1000 * clock.cpu / clock.images)
            same = "yes" if predictions(root / f"ray{count}") == reference else "NO"
            efficiency = rate / (count * base)
            print(f"| {count} | {rate:.1f} | {efficiency:.3f} | {fixed:.1f} | {driver_ms[-1]:.2f} | {same} |")
        cost = min(driver_ms) / 1000
        print(f"\ndriver's own cost per answer (Ray): {1000 * cost:.2f} ms of CPU, so one driver core can store about "
              f"{1 / cost:.0f} images/s: about {1 / cost / base:.0f} workers as fast as this local process.")


if __name__ == "__main__":
    main()
