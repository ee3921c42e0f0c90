"""Answering one chunk: the code every executor runs, in this process or in a Ray worker.

An image that cannot be read is recorded as unreadable; a chunk the model fails on is asked again
image by image, so one bad image costs one image (`steps`). The records are plain values
(`classbench.records`), written by the runner alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

from PIL import Image

from classbench.datasets.base import Sample
from classbench.errors import ImageLoadError, UserError
from classbench.executors import Chunk, Record
from classbench.records import MODEL_ERROR, UNREADABLE, Prediction, Question
from classbench.strategies.base import Item, Step, Strategy


@dataclass
class Loaded:
    """A chunk's decoded images, and the samples that could not be read (with why)."""

    items: list[Item]
    failures: list[tuple[Sample, str]]


def load_chunk(load: Callable[[Sample], Image.Image], chunk: Chunk, whole: bool) -> Loaded:
    """Decode the chunk's images: every one for an atomic strategy (`whole`), else the unfinished ones."""
    wanted = chunk.samples if whole else [sample for sample in chunk.samples if sample.id not in chunk.finished]
    items, failures = [], []
    for sample in wanted:
        try:
            items.append(Item(sample.id, sample.label, load(sample)))
        except ImageLoadError as error:
            failures.append((sample, str(error)))
    return Loaded(items, failures)


def ask_chunk(strategy: Strategy, loaded: Loaded, chunk: Chunk) -> Iterator[list[Record]]:
    """Ask a decoded chunk; yield its records step by step (a whole chunk at once when atomic)."""
    done: Mapping[str, Mapping[str, Question]] = chunk.done
    items = [replace(item, done=done.get(item.image_id, {})) for item in loaded.items]
    records: list[Record] = [
        (sample.id, [], Prediction(sample.id, sample.label, None, "failed", UNREADABLE + reason))
        for sample, reason in loaded.failures if sample.id not in chunk.finished
    ]
    in_chunk: dict[str, dict[str, Question]] = {}
    for step in steps(strategy, items, in_chunk):
        in_chunk.setdefault(step.item.image_id, {}).update({q.key: q for q in step.questions})
        if step.item.image_id in chunk.finished:
            continue
        prediction = _prediction(step, in_chunk[step.item.image_id]) if step.final else None
        records.append((step.item.image_id, list(step.questions), prediction))
        if not strategy.atomic_chunks:
            yield records
            records = []
    yield records


def steps(strategy: Strategy, items: list[Item], asked: dict[str, dict[str, Question]]) -> Iterator[Step]:
    """Run a chunk; when the model fails on it, ask item by item so one bad image costs one image.

    This is the only place a failed batch is split: backends raise, and each undecided image is
    asked again alone, with the questions it already got in this chunk (`asked`, kept by the
    caller as steps go by) counted as answered."""
    if not items:
        return
    decided: set[str] = set()
    try:
        for step in _complete(strategy, items):
            if step.final:
                decided.add(step.item.image_id)
            yield step
        return
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as error:
        remaining = [item for item in items if item.image_id not in decided]
        if len(items) == 1:
            for item in remaining:
                yield Step(item=item, questions=[], final=True, status="failed",
                           detail={"error": MODEL_ERROR + f"{type(error).__name__}: {error}"})
            return
    for item in remaining:  # the images decided before the failure are recorded already
        answered = {key: q for key, q in asked.get(item.image_id, {}).items() if q.error is None}
        yield from steps(strategy, [replace(item, done={**item.done, **answered})], asked)


def _complete(strategy: Strategy, items: list[Item]) -> Iterator[Step]:
    """Buffer a chunk's steps when it is atomic, so a failure halfway writes nothing twice."""
    if strategy.atomic_chunks:
        yield from list(strategy.run(items))
    else:
        yield from strategy.run(items)


def _prediction(step: Step, asked_in_chunk: dict[str, Question]) -> Prediction:
    item = step.item
    asked = {**item.done, **asked_in_chunk}
    latencies = [q.latency_s for q in asked.values() if q.latency_s is not None]
    detail = dict(step.detail or {})
    error = detail.pop("error", None)
    status = step.status if step.status == "failed" else ("ok" if step.prediction is not None else "invalid")
    return Prediction(item.image_id, item.label, step.prediction, status, error,
                      sum(latencies) if latencies else None, detail or None)
