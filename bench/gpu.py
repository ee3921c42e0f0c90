"""GPU figures: images/s and peak GPU memory of full-size VLMs through classbench's own code paths.

No real weights can be downloaded where classbench is built, but speed and memory do not depend on
weight values: each model here is built from its published config.json (the values are written
in gpu_models.py) with random bf16 weights created directly on the GPU, and wrapped in classbench's
transformers backend (`HFVisionLanguageModel`). The strategies a user runs (closed-set with one
pass, binary, likelihood) then answer 21 classes about synthetic 448x448 images at batch sizes 1, 8
and 32, driven chunk by chunk as the runner drives them. The table gives images/s, peak GPU GB
(`torch.cuda.max_memory_allocated`, the figure `metrics.json` reports as `peak_gpu_gb`, weights
included) and the ratio to the published A100 figure (Qwen2-VL-7B 3.5 images/s, Llama-3.2-11B
1.2; none for LLaVA-NeXT). Then, per model, how many answers and predictions differ between batch
1 and batch 8 on the same images: classbench promises answers independent of --batch-size, which
bf16 kernels on a GPU need not keep exactly.

Random weights never stop on their own, so every answer is exactly ANSWER_TOKENS new tokens (the
model's generation config sets `min_new_tokens`, which classbench's `model.generate` calls honour),
and binary is asked all 20 questions per image (a random model never says yes): its worst case.
Likelihood scores one image at a time by design, so its batch size only sets the chunk.

Run on a machine with one large GPU (one H200: about 3 minutes, estimated, not yet measured; after
`--budget-s` seconds, 200 by default, the measurements left are skipped, so it ends within 4):

    python bench/gpu.py                      # all three models, as time allows
    python bench/gpu.py --models qwen2-vl-7b # one model
    python bench/gpu.py --smoke              # tiny configs on the CPU, under a minute (the tests run it)

Needs, from a source checkout (it puts src/ and tests/ on the path; tests/tinymodels builds the
tokenizers): Python >= 3.11, torch with CUDA (classbench pins 2.14.1; the lent H200s have 2.11),
torchvision (Qwen2-VL's processor), transformers whose models take the `cache=` keyword that
classbench's shared-prefix code passes (classbench pins 5.24.0; whether the H200s' 5.17.0 does is
checked at start, in one line), tokenizers, Pillow, numpy, pydantic and rapidfuzz (classbench's own
imports; the H200s lack the last two). A machine without
network gets what it lacks as wheels for its Python, e.g. for Python 3.12:

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d .whl \\
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \\
        transformers==5.24.0 regex==2026.11.19 pydantic==2.14.4 pydantic-core==2.50.5 \\
        annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 rapidfuzz==3.14.6
    pip install --no-index --no-deps --upgrade --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site python bench/gpu.py

(20 MB of wheels; checked with pip here on 2026-12-01.)
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from time import perf_counter
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # a source checkout; the tokenizer builder lives with the tests

from gpu_models import ANSWER_TOKENS, MODELS, ModelSpec, build  # noqa: E402

CLASSES = ["ak47", "backpack", "baseball bat", "bear", "bathtub", "binoculars", "bonsai", "bowling ball",
           "cactus", "calculator", "camel", "canoe", "car tire", "cat", "dog", "duck", "frog", "guitar",
           "teddy bear", "zebra", "clutter"]
BACKGROUND = "clutter"
STRATEGIES = ("closed-set", "binary", "likelihood")
BATCH_SIZES = (1, 8, 32)
INVARIANCE = (1, 8)
NEEDED = ("torch", "torchvision", "transformers", "tokenizers", "PIL", "numpy", "pydantic", "rapidfuzz", "yaml")


def check_requirements() -> None:
    """Fail in one line, before any work, when a package or the transformers API classbench needs is missing."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"bench/gpu.py: missing {', '.join(missing)}; install them or carry them as wheels "
                         "(the command is in bench/gpu.py's docstring)")
    import transformers

    forward = inspect.signature(transformers.Qwen2VLForConditionalGeneration.forward).parameters
    if "cache" not in forward:
        raise SystemExit(f"bench/gpu.py: transformers {transformers.__version__} lacks the `cache=` keyword "
                         "classbench's shared-prefix code passes; use transformers==5.24.0 (a pure-Python wheel, "
                         "see bench/gpu.py's docstring)")


# --- every call into classbench internals is in this section (the rest only builds models and prints) ---

def make_backend(model: Any, processor: Any, model_id: str) -> Any:
    """The transformers backend around an in-memory model, set up as `hf_vlm.load_hf` sets up a loaded one."""
    from classbench.models.hf_adapters import ADAPTERS, GENERIC
    from classbench.models.hf_backend import HFVisionLanguageModel

    model.eval()
    getattr(processor, "tokenizer", processor).padding_side = "left"
    first = next(model.parameters())
    return HFVisionLanguageModel(
        model_id=f"hf:{model_id}", revision="random-weights",
        settings={"device": str(first.device), "dtype": str(first.dtype).removeprefix("torch."),
                  "model_type": model.config.model_type},
        model=model, processor=processor, adapter=ADAPTERS.get(model.config.model_type, GENERIC),
        device=first.device)


@dataclass
class Outcome:
    answers: dict[tuple[str, str], str | None] = field(default_factory=dict)
    predictions: dict[str, str | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """One per image that ended as a model error, or of a chunk whose call raised (an out-of-memory
    batch: the runner would ask its images one by one; here the chunk's images count as errors)."""


def run_strategy(backend: Any, name: str, images: list[Any], classes: list[str], batch_size: int) -> Outcome:
    """Every answer and prediction of one strategy, the images handed over in chunks of `batch_size` as
    the runner's loop hands them (nothing is stored)."""
    from classbench import strategies
    from classbench.strategies.base import Context, Item

    context = Context(classes=list(classes), background=BACKGROUND, seed=0, batch_size=batch_size)
    settings = strategies.settings_class(name)(max_new_tokens=ANSWER_TOKENS)
    strategy = strategies.build(name, backend, settings, context)
    outcome = Outcome()
    for start in range(0, len(images), batch_size):
        items = [Item(f"img{i}", classes[i % len(classes)], image)
                 for i, image in enumerate(images[start:start + batch_size], start)]
        try:
            for step in strategy.run(items):
                for question in step.questions:
                    outcome.answers[(step.item.image_id, question.key)] = question.error or question.answer
                if step.final:
                    outcome.predictions[step.item.image_id] = step.prediction
                    if step.status == "failed":
                        outcome.errors.append(str((step.detail or {}).get("error")))
        except Exception as error:  # noqa: BLE001 - a failed batch costs its images, not the run
            outcome.errors += [f"{type(error).__name__}: {error}"] * len(items)
    return outcome


def peak_gpu_gb(backend: Any) -> float | None:
    return backend.peak_gpu_gb()


def release(backend: Any) -> None:
    backend.close()

# --- end of the classbench section ---


@dataclass
class Row:
    model: str
    strategy: str
    batch: int
    images_per_s: float | None = None
    peak_gb: float | None = None
    errors: int = 0
    note: str = ""


def synthetic_images(n: int, size: int) -> list[Any]:
    from tinymodels.tiny_models import make_rgb_images

    return make_rgb_images(n, size=(size, size), seed=16)


def measure(backend: Any, strategy: str, images: list[Any], batch_size: int) -> tuple[Outcome, float]:
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = perf_counter()
    outcome = run_strategy(backend, strategy, images, CLASSES, batch_size)
    if cuda:
        torch.cuda.synchronize()
    return outcome, perf_counter() - started


def bench_model(spec: ModelSpec, smoke: bool, images: list[Any], device: str, deadline: float,
                log: list[str]) -> int:
    """Measure one model, printing each row as it is measured, so a run cut short still shows what it
    measured; a failure costs its row (or the model), never the rest of the table. Returns how many
    rows failed or had errors."""
    import torch

    started = perf_counter()
    try:
        model, processor = build(spec, smoke, device, torch.bfloat16, CLASSES)
        backend = make_backend(model, processor, spec.hub_id)
        for strategy in STRATEGIES:  # kernels and caches warm before anything is timed
            run_strategy(backend, strategy, images[:2], CLASSES, 2)
    except Exception as error:  # noqa: BLE001 - reported in the table, the next model still runs
        for strategy in STRATEGIES:
            for batch in BATCH_SIZES:
                print_row(spec, Row(spec.hub_id, strategy, batch, note=f"model failed: {_short(error)}"))
        _free()
        return len(STRATEGIES) * len(BATCH_SIZES)
    params = sum(p.numel() for p in model.parameters()) / 1e9
    log.append(f"{spec.hub_id}: {params:.2f}B parameters{' (tiny)' if smoke else ''}, attention "
               f"{getattr(model.config, '_attn_implementation', None)}, built and warmed in "
               f"{perf_counter() - started:.1f} s")
    outcomes, bad = {}, 0
    for strategy in STRATEGIES:
        for batch in BATCH_SIZES:
            row = Row(spec.hub_id, strategy, batch)
            if perf_counter() > deadline:
                row.note = "skipped: --budget-s reached"
            else:
                try:
                    outcome, seconds = measure(backend, strategy, images, batch)
                except Exception as error:  # noqa: BLE001 - an out-of-memory batch, say: its row says so
                    row.note = f"failed: {_short(error)}"
                    bad += 1
                    _free()
                else:
                    outcomes[strategy, batch] = outcome
                    row.images_per_s, row.peak_gb = len(images) / seconds, peak_gpu_gb(backend)
                    row.errors = len(outcome.errors)
                    if outcome.errors:
                        row.note = f"first error: {outcome.errors[0][:160]}"
                        bad += 1
            print_row(spec, row)
    log.append(invariance_line(spec.hub_id, outcomes, len(images)))
    release(backend)
    del model, backend, processor
    _free()
    return bad


def _short(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".replace("\n", " ")[:200]


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def invariance_line(name: str, outcomes: dict[tuple[str, int], Outcome], n_images: int) -> str:
    small, large = INVARIANCE
    parts = []
    for strategy in STRATEGIES:
        a, b = outcomes.get((strategy, small)), outcomes.get((strategy, large))
        if a is None or b is None:
            parts.append(f"{strategy} not measured")
            continue
        answers = sorted(set(a.answers) | set(b.answers))
        answer_diff = sum(a.answers.get(key) != b.answers.get(key) for key in answers)
        predicted = sorted(set(a.predictions) | set(b.predictions))
        prediction_diff = sum(a.predictions.get(key) != b.predictions.get(key) for key in predicted)
        if strategy == "likelihood":
            parts.append(f"{strategy} {prediction_diff}/{len(predicted)} argmaxes differ "
                         f"({answer_diff}/{len(answers)} top-5 score answers)")
        else:
            parts.append(f"{strategy} {answer_diff}/{len(answers)} answers, "
                         f"{prediction_diff}/{len(predicted)} predictions differ")
    return f"batch invariance {name} (batch {small} vs {large}, {n_images} images): " + "; ".join(parts)


HEADER = ("| model | strategy | batch | images/s | peak GPU GB | x published | errors |\n"
          "|---|---|---|---|---|---|---|")


def print_row(spec: ModelSpec, row: Row) -> None:
    rate = f"{row.images_per_s:.2f}" if row.images_per_s is not None else "-"
    gb = f"{row.peak_gb:.1f}" if row.peak_gb is not None else ("n/a (cpu)" if row.images_per_s else "-")
    base = spec.published_images_per_s
    ratio = f"{row.images_per_s / base:.2f}" if base and row.images_per_s is not None else "n/a"
    errors = str(row.errors) if row.images_per_s is not None else "-"
    print(f"| {row.model} | {row.strategy} | {row.batch} | {rate} | {gb} | {ratio} | {errors} |"
          + (f" {row.note}" if row.note else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny configs on the CPU: the same code path in seconds")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--images", type=int, default=None, help="images per measurement [default: 64; smoke 8]")
    parser.add_argument("--image-size", type=int, default=None, help="square image side [default: 448; smoke 112]")
    parser.add_argument("--budget-s", type=float, default=200.0,
                        help="after this many seconds, measurements left are skipped [default: 200]")
    args = parser.parse_args()
    began = perf_counter()
    check_requirements()
    import torch
    import transformers

    unknown = [name for name in args.models.split(",") if name not in MODELS]
    if unknown:
        raise SystemExit(f"bench/gpu.py: unknown --models {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py: no CUDA device; run it on a GPU machine, or `--smoke` for the CPU check")
    device = "cpu" if args.smoke else "cuda"
    if args.smoke:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    n_images = args.images or (8 if args.smoke else 64)
    size = args.image_size or (112 if args.smoke else 448)
    images = synthetic_images(n_images, size)
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke: tiny configs)"
    print(f"classbench GPU figures · {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {where} · "
          f"torch {torch.__version__} · transformers {transformers.__version__} · bf16 random weights · "
          f"{n_images} images {size}x{size} · {len(CLASSES)} classes · {ANSWER_TOKENS} new tokens per answer",
          flush=True)
    print(HEADER, flush=True)
    log: list[str] = []
    bad = 0
    deadline = began + args.budget_s
    for name in args.models.split(","):
        spec = MODELS[name]
        if perf_counter() > deadline:
            for strategy in STRATEGIES:
                for batch in BATCH_SIZES:
                    print_row(spec, Row(spec.hub_id, strategy, batch, note="skipped: --budget-s reached"))
            continue
        bad += bench_model(spec, args.smoke, images, device, deadline, log)
    print("\n".join(log))
    print("binary asks all 20 questions per image (random weights never say yes): its worst case; "
          "likelihood scores one image at a time, so its batch size only sets the chunk")
    print(f"total {perf_counter() - began:.1f} s")
    if bad:
        raise SystemExit(f"bench/gpu.py: {bad} measurements failed or had errors (see the table)")


if __name__ == "__main__":
    main()
