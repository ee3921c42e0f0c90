"""The run loop: sample, load the model (timed apart), ask in chunks, record every answer.

Images are decoded in a background thread one chunk ahead, so decoding overlaps the model. A
chunk is a fixed slice of the sampled order, so a resumed run forms the same batches. An image
that cannot be read, or on which the model fails even when asked alone, is recorded as a
failure and the run goes on.
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter

from classbench import images, pricing, provenance, runlock, strategies
from classbench.commits import Committer
from classbench.datasets import Dataset, Sample, read_class_list, select
from classbench.datasets.cache import DatasetCache
from classbench.datasets.templates import with_dataset_templates
from classbench.errors import ImageLoadError, UserError
from classbench.models.base import Backend
from classbench.records import MODEL_ERROR, UNREADABLE, Prediction, Question
from classbench.spec import RunSpec
from classbench.store import STORE_NAME, Store
from classbench.strategies.base import Context, Item, Step, Strategy

GIVE_UP_AFTER = 20
"""Consecutive failures with nothing answered yet that mean the model, not the data, is broken."""


@dataclass
class RunResult:
    out: Path
    resumed: bool
    asked: int
    total: int
    stopped: str | None = None
    """Why the run stopped before the end on purpose (--max-cost), with how to go on."""


@dataclass
class _Loaded:
    items: list[Item]
    failures: list[tuple[Sample, str]]


class Progress:
    """What the runner reports while it works; the CLI shows it as a progress bar."""

    def start(self, total: int, done: int, description: str) -> None: ...
    def advance(self, count: int) -> None: ...
    def stop(self) -> None: ...


class ModelPool:
    """Holds the last model loaded, so consecutive runs of one model (a sweep's points) load it once.

    A run given no pool gets its own and releases the model when it ends.
    """

    def __init__(self) -> None:
        self._key: str | None = None
        self._model: Backend | None = None

    def get(self, spec: RunSpec) -> tuple[Backend, float]:
        """The model for `spec` and the seconds spent loading it (0 when it was already loaded)."""
        key = json.dumps([spec.model.name, spec.model.settings, spec.runtime.device], sort_keys=True, default=str)
        if key == self._key and self._model is not None:
            return self._model, 0.0
        self.close()
        from classbench.models import load_model

        started = perf_counter()
        self._model = load_model(spec.model.name, spec.model_settings(), spec.runtime.device)
        self._key = key
        return self._model, perf_counter() - started

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
        self._model, self._key = None, None


def run(spec: RunSpec, out: Path, progress: Progress | None = None, log: Callable[[str], None] = print,
        check_batching: bool = False, models: ModelPool | None = None,
        datasets: DatasetCache | None = None) -> RunResult:
    """`datasets`: share one scan of the dataset between runs (a sweep's points); None scans here."""
    progress = progress or Progress()
    pool = models or ModelPool()
    try:
        with runlock.hold(out):  # one process per run folder (runlock.py)
            return _run(spec, out, progress, log, check_batching, pool, datasets or DatasetCache())
    finally:
        if models is None:
            pool.close()


def _run(spec: RunSpec, out: Path, progress: Progress, log: Callable[[str], None], check_batching: bool,
         pool: ModelPool, datasets: DatasetCache) -> RunResult:
    done = _done_without_data(spec, out)
    if done is not None:
        log(f"resuming {out}: {done} of {done} images done")
        return RunResult(out, True, 0, done)
    images.set_limits(spec.runtime.max_image_pixels, spec.runtime.max_aspect_ratio)  # memory per image
    dataset = datasets.open(spec)
    sample = spec.sample
    class_list = read_class_list(sample.class_list) if sample.class_list else None
    selection = select(dataset, sample.classes, sample.per_class, sample.seed, sample.background, shots=spec.shots(),
                       class_list=class_list)
    out.mkdir(parents=True, exist_ok=True)
    new_run = not (out / STORE_NAME).exists()
    store = Store(out / STORE_NAME)
    try:
        resumed = store.begin_or_resume(
            spec.identity(),
            selection.samples,
            {"spec": spec.record(), "classes": selection.classes, "background": selection.background,
             "dataset": {"name": dataset.name, "n_images": len(dataset.samples), "n_classes": len(dataset.classes),
                         "skipped": dict(dataset.skipped), **dataset.info, "templates": dataset.templates},
             "provenance": provenance.collect()},
        )
        for reason, count in sorted(dataset.skipped.items()):
            log(f"skipped {count} {reason}{'s' if count != 1 else ''} in {dataset.name}")
        finished = _finished(store)
        pending = [sample for sample in selection.samples if sample.id not in finished]
        if resumed:
            log(f"resuming {out}: {len(selection.samples) - len(pending)} of {len(selection.samples)} images done")
        if not pending:
            return RunResult(out, resumed, 0, len(selection.samples))

        try:
            model, load_s = pool.get(with_dataset_templates(spec, dataset))
            context = Context(classes=selection.classes, background=selection.background, seed=sample.seed,
                              batch_size=spec.runtime.batch_size, out=out, shots=selection.shots,
                              load_image=dataset.load)
            strategy = strategies.build(spec.strategy.name, model, spec.strategy_settings(), context)
        except BaseException:
            if new_run:  # nothing was asked: leave no store that would pin this folder to a failed spec
                store.discard()
            raise
        log(f"loaded {model.model_id} in {load_s:.1f}s" if load_s else f"reusing the loaded {model.model_id}")
        if check_batching:
            from classbench import batching

            batching.check(lambda size: strategies.build(spec.strategy.name, model, spec.strategy_settings(),
                                                         replace(context, batch_size=size)), dataset, pending, log)
        _check_same_model(store, model.describe())
        store.set_meta({"model": model.describe(), "strategy": strategy.describe()})
        store.start_session(device=str(model.settings.get("device", spec.runtime.device)),
                            batch_size=spec.runtime.batch_size)
        store.update_session(load_s=load_s)

        budget = pricing.Budget.for_run(spec.runtime.max_cost, model.describe())
        try:
            asked = _loop(store, dataset, selection.samples, finished, strategy, spec.runtime.batch_size, progress,
                          model, budget)
        except pricing.BudgetReached as stop:
            return RunResult(out, resumed, store.sessions()[-1]["n_images"], len(selection.samples), stopped=str(stop))
        return RunResult(out, resumed, asked, len(selection.samples))
    finally:
        store.close()


def _loop(store: Store, dataset: Dataset, samples: Sequence[Sample], finished: set[str], strategy: Strategy,
          batch_size: int, progress: Progress, model, budget: pricing.Budget | None = None) -> int:
    chunks = [list(samples[start:start + batch_size]) for start in range(0, len(samples), batch_size)]
    chunks = [chunk for chunk in chunks if any(sample.id not in finished for sample in chunk)]
    progress.start(len(samples), len(finished), f"{model.model_id} · {strategy.name}")
    asked = 0
    streak = 0
    clock = perf_counter()
    commits = Committer(store)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
            def prefetch(index: int) -> Future[_Loaded] | None:
                if index >= len(chunks):
                    return None
                whole = strategy.atomic_chunks
                return pool.submit(_load_chunk, dataset, chunks[index], finished, whole)

            upcoming = prefetch(0)
            for index in range(len(chunks)):
                if budget is not None:
                    budget.check(store, len(chunks[index]))
                loaded = upcoming.result()
                upcoming = prefetch(index + 1)
                done = store.questions_for(item.image_id for item in loaded.items)
                items = [replace(item, done=done[item.image_id]) for item in loaded.items]
                records: list[tuple[str, list[Question], Prediction | None]] = [
                    (sample.id, [], Prediction(sample.id, sample.label, None, "failed", UNREADABLE + reason))
                    for sample, reason in loaded.failures if sample.id not in finished
                ]
                in_chunk: dict[str, dict[str, Question]] = {}
                for step in _steps(strategy, items, in_chunk):
                    in_chunk.setdefault(step.item.image_id, {}).update({q.key: q for q in step.questions})
                    if step.item.image_id in finished:
                        continue
                    prediction = _prediction(step, in_chunk[step.item.image_id]) if step.final else None
                    records.append((step.item.image_id, list(step.questions), prediction))
                    if prediction is not None:
                        streak = streak + 1 if prediction.status == "failed" else 0
                        asked += 1
                    if not strategy.atomic_chunks:
                        clock = _write(commits, records, clock, progress)
                        records = []
                clock = _write(commits, records, clock, progress)
                commits.flush()
                store.update_session(peak_rss_gb=_peak_rss_gb(), peak_gpu_gb=model.peak_gpu_gb())
                if streak >= GIVE_UP_AFTER and asked == streak:
                    raise UserError(f"the model failed on the first {streak} images; the last error: "
                                    f"{_last_error(store)}")
    finally:
        try:
            commits.close()
        finally:
            progress.stop()
    return asked


def _write(commits: Committer, records: list[tuple[str, list[Question], Prediction | None]], clock: float,
           progress: Progress) -> float:
    """Hand records to the committer: in the store within 0.2 s, and at the chunk's end (`commits.flush`)."""
    if not records:
        return clock
    now = perf_counter()
    done = sum(1 for _, _, prediction in records if prediction is not None)
    commits.add(records, done, now - clock)
    progress.advance(done)
    return now


def _steps(strategy: Strategy, items: list[Item], asked: dict[str, dict[str, Question]]) -> Iterator[Step]:
    """Run a chunk; when the model fails on it, ask item by item so one bad image costs one image.

    This is the only place a failed batch is split: backends raise, and the runner retries each
    undecided image alone, with the questions it already got in this chunk (`asked`, kept by the
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
        yield from _steps(strategy, [replace(item, done={**item.done, **answered})], asked)


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


def _load_chunk(dataset: Dataset, chunk: list[Sample], finished: set[str], whole: bool) -> _Loaded:
    wanted = chunk if whole else [sample for sample in chunk if sample.id not in finished]
    items, failures = [], []
    for sample in wanted:
        try:
            items.append(Item(sample.id, sample.label, dataset.load(sample)))
        except ImageLoadError as error:
            failures.append((sample, str(error)))
    return _Loaded(items, failures)


def _done_without_data(spec: RunSpec, out: Path) -> int | None:
    """The image count of a finished run of this spec in `out`, found from its store alone, so
    running it again neither scans the dataset nor loads the model; None when work is left."""
    if not (out / STORE_NAME).is_file():
        return None
    store = Store(out / STORE_NAME)
    try:
        return store.done_without_data(spec.identity())
    finally:
        store.close()


def _finished(store: Store) -> set[str]:
    """Images that need no more work: answered, or unreadable (model errors are retried)."""
    return store.finished_images()


def _check_same_model(store: Store, described: dict) -> None:
    stored = store.meta("model")
    if stored and stored.get("revision") != described.get("revision"):
        raise UserError(
            f"{store.path.parent} was started with {stored.get('model_id')} at revision {stored.get('revision')}, "
            f"but the model now loads at revision {described.get('revision')}; its answers would not be comparable. "
            "Use another --out folder."
        )


def _last_error(store: Store) -> str:
    failed = [p for p in store.predictions() if p.status == "failed"]
    return failed[-1].error if failed else "unknown"


def _peak_rss_gb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024
    return round(peak * scale / 1024**3, 3)
