"""What a question costs classbench itself over an OpenAI-compatible API, against a server that
answers at once (`tests/instant_server.py`, in its own process).

For closed-set (`--shuffles 3`) and binary (21 classes, the server always says no, so every image
is asked all 21 questions), at `--concurrency` 1, 16 and 64, it runs `classbench run` twice, on a
small and a large set of 400x300 JPEG photos, and prints:

- classbench's CPU per question as a marginal cost: (user+sys CPU of the large run − of the small
  run) / (questions of the large − of the small), so start-up (imports, loading) does not count;
- the wall-clock questions per second of the large run;
- the server's own CPU per request (its `GET /stats`), to show the server is not the bottleneck;
- bytes sent per question (the request body) beside the mean JPEG file size and its base64 size.

Each size runs `--repeat` times (default 3) and the least CPU counts: on a shared machine other
processes only ever add to a run's CPU time (cache misses, frequency), never take from it. Speed
is measured here and printed, never asserted in tests. `--quick` uses fewer images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CLASSES = [f"class{index:02d}" for index in range(21)]
STRATEGIES = {"closed-set": ["--shuffles", "3"], "binary": []}
QUESTIONS_PER_IMAGE = {"closed-set": 3, "binary": len(CLASSES)}


def make_photos(root: Path, per_class: int, seed: int = 0) -> float:
    """400x300 JPEGs with smooth structure and grain, so they compress like photos; mean size in bytes."""
    rng = np.random.default_rng(seed)
    sizes = []
    for name in CLASSES:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            coarse = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).resize((400, 300),
                                                                                              Image.Resampling.BICUBIC)
            grain = rng.normal(0, 10, (300, 400, 3))
            pixels = np.clip(np.asarray(coarse, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
            path = folder / f"{index:03d}.jpg"
            Image.fromarray(pixels).save(path, quality=85)
            sizes.append(path.stat().st_size)
    return sum(sizes) / len(sizes)


def stats(url: str) -> dict:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=10) as response:
        return json.loads(response.read())


def run_once(dataset: Path, url: str, out: Path, strategy: str, concurrency: int, per_class: int) -> dict:
    """One `classbench run` in a child process; its CPU (user+sys) from wait4, the server's from /stats."""
    command = [sys.executable, "-m", "classbench", "run", "--dataset", str(dataset), "--model", "openai:instant",
               "--base-url", url, "--strategy", strategy, *STRATEGIES[strategy], "--per-class", str(per_class),
               "--concurrency", str(concurrency), "--batch-size", str(max(64, concurrency)), "--out", str(out),
               "--no-progress"]
    before = stats(url)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    output = child.stdout.read().decode() + child.stderr.read().decode()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"classbench run failed ({child.returncode}):\n{output[-3000:]}")
    after = stats(url)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "requests": after["requests"] - before["requests"],
            "body_bytes": after["body_bytes"] - before["body_bytes"], "server_cpu_s": after["cpu_s"] - before["cpu_s"],
            "images_per_s": metrics.get("images_per_s"), "n_images": metrics["n_images"]}


def least_cpu(work: Path, url: str, strategy: str, concurrency: int, per_class: int, repeat: int) -> dict:
    runs = [run_once(work / "photos", url, work / f"{strategy}-{concurrency}-{per_class}-{n}", strategy, concurrency,
                     per_class) for n in range(repeat)]
    return min(runs, key=lambda run: run["cpu_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images (a rougher figure)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--strategy", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each size; the least CPU counts")
    args = parser.parse_args()
    sizes = {"closed-set": (2, 8 if args.quick else 60), "binary": (1, 2 if args.quick else 12)}

    with tempfile.TemporaryDirectory(prefix="classbench-api-") as tmp:
        work = Path(tmp)
        largest = max(large for _, large in sizes.values())
        file_bytes = make_photos(work / "photos", largest)
        server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "instant_server.py"), "--answer", "class00"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().strip()
            print(f"400x300 JPEGs: {file_bytes / 1024:.1f} KiB on disk, {file_bytes * 4 / 3 / 1024:.1f} KiB as base64")
            print("| strategy | concurrency | questions (small → large) | classbench CPU ms/question | questions/s "
                  "| server CPU ms/request | KiB sent/question |")
            print("|---|---|---|---|---|---|---|")
            for strategy in args.strategy:
                for concurrency in args.concurrency:
                    small, large = (least_cpu(work, url, strategy, concurrency, per_class, args.repeat)
                                    for per_class in sizes[strategy])
                    questions = large["requests"] - small["requests"]
                    per_question = (large["cpu_s"] - small["cpu_s"]) / questions * 1000
                    rate = large["images_per_s"] * QUESTIONS_PER_IMAGE[strategy] if large["images_per_s"] else 0
                    server_ms = large["server_cpu_s"] / large["requests"] * 1000
                    sent = large["body_bytes"] / large["requests"] / 1024
                    print(f"| {strategy} | {concurrency} | {small['requests']} → {large['requests']} | "
                          f"{per_question:.3f} | {rate:.0f} | {server_ms:.3f} | {sent:.1f} |", flush=True)
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
