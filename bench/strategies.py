"""How much faster the shared-prefix paths are, on the CPU, with tiny real-architecture VLMs.

For a tiny Qwen2-VL and a tiny LLaVA (random weights, 21 classes) it measures images per second of
(a) likelihood: one full forward per candidate (`tests/tinymodels/full_forward.py`) vs shared-prefix scoring,
(b) binary: round-by-round `generate` vs an image's questions over a shared prefix,
(c) closed-set: batch size 1 vs 8,
checks that each pair gives the same predictions (and, for (b) and (c), the same stored answers),
and prints the ratios; the last line is `speedups: likelihood A.Ax, binary B.Bx, closed-set C.Cx`
(each the geometric mean over the two models). Run it with `make bench`; speed is measured here,
never asserted in tests.

Binary is measured with a model rigged to say yes to one class only (`Rig(yes_if=...)`), so each
image stops part-way through its questions as a real model would, and answers are one short word.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tiny-model builders live with the tests

from classbench.batching import answers_at
from classbench.datasets import Sample
from classbench.models.base import ScoreRequest
from classbench.models import load_model
from classbench.strategies.base import Context
from classbench.strategies.binary import Binary, BinarySettings
from classbench.strategies.binary_shared import SharedPrefixBinary
from classbench.strategies.closed_set import ClosedSet, ClosedSetSettings
from tinymodels.full_forward import score_full_forward
from tinymodels.tiny_models import Rig, build_tiny_vlm, make_rgb_images

CLASSES = ["ak47", "backpack", "baseball bat", "bear", "bathtub", "binoculars", "bonsai", "bowling ball",
           "cactus", "calculator", "camel", "canoe", "car tire", "cat", "dog", "duck", "frog", "guitar",
           "teddy bear", "zebra", "clutter"]
ARCHS = ("qwen2_vl", "llava")
YES_TO = "guitar"


def _rate(images: int, work: Callable[[], object]) -> tuple[float, object]:
    started = perf_counter()
    result = work()
    return images / (perf_counter() - started), result


def _samples(n: int) -> list[tuple[Sample, object]]:
    sizes = [(64, 48), (48, 64), (56, 56), (80, 40)]
    images = make_rgb_images(n, seed=5)
    return [(Sample(f"img{i}.png", CLASSES[i % len(CLASSES)]), image.resize(sizes[i % len(sizes)]))
            for i, image in enumerate(images)]


def likelihood(model, samples) -> tuple[float, float]:
    requests = [ScoreRequest(image, "Question: What type of object is in this photo? Answer:", tuple(CLASSES))
                for _, image in samples]
    model.score(requests[:1])
    full_rate, full = _rate(len(requests), lambda: [score_full_forward(model, r) for r in requests])
    shared_rate, shared = _rate(len(requests), lambda: model.score(requests))
    gap = max(float(np.abs(a.logprob - b.logprob).max()) for a, b in zip(full, shared))
    same = [int(np.argmax(a.logprob)) for a in full] == [int(np.argmax(b.logprob)) for b in shared]
    print(f"  likelihood: full forward per candidate {full_rate:.2f} img/s, shared prefix {shared_rate:.2f} img/s "
          f"→ {shared_rate / full_rate:.1f}x; same predictions: {same}; max |Δ log-prob| {gap:.1e}")
    if not same:
        raise SystemExit("likelihood: shared-prefix predictions differ from the full-forward reference")
    return full_rate, shared_rate


def _maker(strategy: type, model, settings) -> Callable[[int], object]:
    return lambda size: strategy(model, settings, Context(classes=CLASSES, background="clutter", seed=0,
                                                          batch_size=size))


def binary(model, samples, batch_size: int) -> tuple[float, float]:
    sequential, shared_prefix = (_maker(cls, model, BinarySettings()) for cls in (Binary, SharedPrefixBinary))
    answers_at(shared_prefix, samples[:1], batch_size)
    seq_rate, seq = _rate(len(samples), lambda: answers_at(sequential, samples, batch_size))
    shared_rate, shared = _rate(len(samples), lambda: answers_at(shared_prefix, samples, batch_size))
    asked = sum(key != "(prediction)" for _, key in seq)
    print(f"  binary: round by round {seq_rate:.2f} img/s, shared prefix {shared_rate:.2f} img/s "
          f"→ {shared_rate / seq_rate:.1f}x; same answers and predictions: {seq == shared} "
          f"({asked} questions stored, {asked / len(samples):.1f} per image)")
    if seq != shared:
        raise SystemExit("binary: shared-prefix answers differ from round-by-round answers")
    return seq_rate, shared_rate


def closed_set(model, samples) -> tuple[float, float]:
    make = _maker(ClosedSet, model, ClosedSetSettings(max_new_tokens=10))
    answers_at(make, samples[:2], 2)
    one_rate, one = _rate(len(samples), lambda: answers_at(make, samples, 1))
    eight_rate, eight = _rate(len(samples), lambda: answers_at(make, samples, 8))
    print(f"  closed-set: batch 1 {one_rate:.2f} img/s, batch 8 {eight_rate:.2f} img/s "
          f"→ {eight_rate / one_rate:.1f}x; same answers and predictions: {one == eight}")
    if one != eight:
        raise SystemExit("closed-set: answers differ between batch sizes 1 and 8")
    return one_rate, eight_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32, help="images per measurement")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads [default: 1: tiny models gain nothing from more, and on a busy machine "
                             "OpenMP threads waiting for each other make the figures noise]")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = _samples(args.images)
    words = [word for name in CLASSES for word in name.split()]
    ratios: dict[str, list[float]] = {"likelihood": [], "binary": [], "closed-set": []}
    with tempfile.TemporaryDirectory(prefix="classbench-bench-") as root:
        for arch in ARCHS:
            print(f"{arch} (tiny, random weights, {len(CLASSES)} classes, {len(samples)} images, "
                  f"{torch.get_num_threads()} threads)")
            model = load_model(f"hf:{build_tiny_vlm(arch, Path(root) / arch, words=words)}", {}, "cpu")
            low, high = likelihood(model, samples)
            ratios["likelihood"].append(high / low)
            low, high = closed_set(model, samples)
            ratios["closed-set"].append(high / low)
            rigged = load_model(f"hf:{build_tiny_vlm(arch, Path(root) / f'{arch}-yes', words=words, rig=Rig(yes_if=YES_TO))}",
                                {}, "cpu")
            low, high = binary(rigged, samples, batch_size=8)
            ratios["binary"].append(high / low)
    mean = {name: math.exp(sum(map(math.log, values)) / len(values)) for name, values in ratios.items()}
    print(f"speedups: likelihood {mean['likelihood']:.1f}x, binary {mean['binary']:.1f}x, "
          f"closed-set {mean['closed-set']:.1f}x")


if __name__ == "__main__":
    main()
