"""The run loop: sample, load the model (timed apart), ask in chunks, record every answer.

A chunk is a fixed slice of the sampled order, so a resumed run forms the same batches. An executor
answers the chunks (in this process, or on Ray workers: `classbench.executors`) and this module
alone writes what comes back. An image that cannot be read, or on which the model fails even when
asked alone, is recorded as a failure and the run goes on.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter

from classbench import images, pricing, provenance, runlock
from classbench.commits import Committer
from classbench.datasets import read_class_list, select
from classbench.datasets.cache import DatasetCache
from classbench.datasets.templates import with_dataset_templates
from classbench.errors import UserError
from classbench.executors import Chunk, Executor, Job, chunks_of, make_executor
from classbench.executors.local import ModelPool
from classbench.records import Record
from classbench.spec import RunSpec
from classbench.store import STORE_NAME, Store

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


class Progress:
    """What the runner reports while it works; the CLI shows it as a progress bar."""

    def start(self, total: int, done: int, description: str) -> None: ...
    def advance(self, count: int) -> None: ...
    def stop(self) -> None: ...


def run(spec: RunSpec, out: Path, progress: Progress | None = None, log: Callable[[str], None] = print,
        check_batching: bool = False, models: ModelPool | None = None,
        datasets: DatasetCache | None = None, executor: Executor | None = None) -> RunResult:
    """`datasets`: share one scan of the dataset between runs (a sweep's points); None scans here.
    `executor` answers the chunks (default: the spec's `--executor`, made for this run and closed after
    it); `models` keeps a local model loaded across runs of the default local executor."""
    progress = progress or Progress()
    own = executor is None
    executor = executor or make_executor(spec.runtime, models)
    try:
        with runlock.hold(out):  # one process per run folder (runlock.py)
            return _run(spec, out, progress, log, check_batching, executor, datasets or DatasetCache())
    finally:
        if own:
            executor.close()


def _run(spec: RunSpec, out: Path, progress: Progress, log: Callable[[str], None], check_batching: bool,
         executor: Executor, datasets: DatasetCache) -> RunResult:
    done = done_without_data(spec, out)
    if done is not None:
        log(f"resuming {out}: {done} of {done} images done")
        return RunResult(out, True, 0, done)
    images.set_limits(spec.runtime.max_image_pixels, spec.runtime.max_aspect_ratio)  # memory per image
    dataset = datasets.open(spec)
    sample = spec.sample
    class_list = read_class_list(sample.class_list) if sample.class_list else None
    selection = select(dataset, sample.classes, sample.per_class, sample.seed, sample.background, shots=spec.shots(),
                       class_list=class_list)
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
        finished = store.finished_images()  # answered, or unreadable (model errors are retried)
        pending = [sample for sample in selection.samples if sample.id not in finished]
        if resumed:
            log(f"resuming {out}: {len(selection.samples) - len(pending)} of {len(selection.samples)} images done")
        if not pending:
            return RunResult(out, resumed, 0, len(selection.samples))

        try:
            job = Job(with_dataset_templates(spec, dataset), selection.classes, selection.background,
                      list(selection.shots))
            started = executor.start(job, dataset, out)
        except BaseException:
            if new_run:  # nothing was asked: leave no store that would pin this folder to a failed spec
                store.discard()
            raise
        log(f"loaded {started.model_id} in {started.load_s:.1f}s" if started.load_s
            else f"reusing the loaded {started.model_id}")
        if check_batching:
            executor.check_batching(dataset, pending, log)
        _check_same_model(store, started.model)
        store.set_meta({"model": started.model, "strategy": started.strategy})
        store.start_session(device=started.device, batch_size=spec.runtime.batch_size)
        store.update_session(load_s=started.load_s)

        budget = pricing.Budget.for_run(spec.runtime.max_cost, started.model)
        chunks = chunks_of(selection.samples, spec.runtime.batch_size, finished)
        try:
            asked = _loop(store, executor, chunks, progress, f"{started.model_id} · {started.strategy_name}",
                          len(selection.samples), len(finished), budget)
        except pricing.BudgetReached as stop:
            return RunResult(out, resumed, store.sessions()[-1]["n_images"], len(selection.samples), stopped=str(stop))
        return RunResult(out, resumed, asked, len(selection.samples))
    finally:
        store.close()


def _loop(store: Store, executor: Executor, chunks: list[Chunk], progress: Progress, description: str,
          total: int, done: int, budget: pricing.Budget | None = None) -> int:
    def admit(chunk: Chunk) -> Chunk:
        if budget is not None:
            budget.check(store, len(chunk.samples))
        return replace(chunk, done=store.questions_for(sample.id for sample in chunk.samples))

    progress.start(total, done, description)
    asked = 0
    streak = 0
    clock = perf_counter()
    commits = Committer(store)
    try:
        for answered in executor.answer(chunks, admit):
            decided = [prediction for _, _, prediction in answered.records if prediction is not None]
            for prediction in decided:
                streak = streak + 1 if prediction.status == "failed" else 0
            asked += len(decided)
            clock = _write(commits, answered.records, len(decided), clock, progress)
            if answered.last:
                commits.flush()
                store.update_session(peak_rss_gb=_peak_rss_gb(), peak_gpu_gb=executor.peak_gpu_gb())
                if streak >= GIVE_UP_AFTER and asked == streak:
                    raise UserError(f"the model failed on the first {streak} images; the last error: "
                                    f"{_last_error(store)}")
    finally:
        try:
            commits.close()
        finally:
            progress.stop()
            executions = {**(store.meta("execution") or {}), str(store.session_id): executor.execution()}
            store.set_meta({"execution": executions})
    return asked


def _write(commits: Committer, records: list[Record], decided: int, clock: float, progress: Progress) -> float:
    """Hand records (`decided` of them final) to the committer: in the store within 0.2 s, and at
    the chunk's end (`commits.flush`)."""
    if not records:
        return clock
    now = perf_counter()
    commits.add(records, decided, now - clock)
    progress.advance(decided)
    return now


def done_without_data(spec: RunSpec, out: Path) -> int | None:
    """The image count of a finished run of this spec in `out`, found from its store alone, so
    running it again neither scans the dataset nor loads the model; None when work is left."""
    if not (out / STORE_NAME).is_file():
        return None
    store = Store(out / STORE_NAME)
    try:
        return store.done_without_data(spec.identity())
    finally:
        store.close()


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
