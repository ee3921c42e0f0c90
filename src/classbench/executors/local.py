"""The local executor: the model in this process, images decoded one chunk ahead in a thread."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from time import perf_counter
from typing import Any

from classbench import strategies
from classbench.datasets.base import Dataset, Sample
from classbench.executors import Answered, Chunk, Executor, Job, Started
from classbench.executors.work import Loaded, ask_chunk, load_chunk
from classbench.models.base import Backend
from classbench.spec import RunSpec
from classbench.strategies.base import Context, Strategy


class ModelPool:
    """Holds the last model loaded, so consecutive runs of one model (a sweep's points) load it once.

    A run given no pool gets its own and releases the model when it ends.
    """

    def __init__(self) -> None:
        self._key: str | None = None
        self._model: Backend | None = None

    def get(self, spec: RunSpec) -> tuple[Backend, float]:
        """The model for `spec` and the seconds spent loading it (0 when it was already loaded)."""
        key = model_key(spec)
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


def model_key(spec: RunSpec) -> str:
    """Two specs with the same key load the same model."""
    return json.dumps([spec.model.name, spec.model.settings, spec.runtime.device], sort_keys=True, default=str)


def context_for(job: Job, out: Any, load_image: Callable[[Sample], Any]) -> Context:
    spec = job.spec
    return Context(classes=job.classes, background=job.background, seed=spec.sample.seed,
                   batch_size=spec.runtime.batch_size, out=out, shots=job.shots, load_image=load_image)


def build_strategy(job: Job, model: Backend, context: Context) -> Strategy:
    return strategies.build(job.spec.strategy.name, model, job.spec.strategy_settings(), context)


def started(job: Job, model: Backend, strategy: Strategy, load_s: float) -> Started:
    """What the runner stores about the model and strategy, wherever they were built."""
    device = str(model.settings.get("device", job.spec.runtime.device))
    return Started(model.describe(), strategy.describe(), model.model_id, strategy.name, load_s, device)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, models: ModelPool | None = None) -> None:
        self.models = models or ModelPool()
        self.owns_models = models is None
        self.model: Backend | None = None
        self.strategy: Strategy | None = None
        self.dataset: Dataset | None = None
        self.job: Job | None = None
        self.context: Context | None = None

    def start(self, job: Job, dataset: Dataset, out: Path) -> Started:
        self.model, load_s = self.models.get(job.spec)
        self.context = context_for(job, out, dataset.load)
        self.strategy = build_strategy(job, self.model, self.context)
        self.dataset, self.job = dataset, job
        return started(job, self.model, self.strategy, load_s)

    def answer(self, chunks: Sequence[Chunk], admit: Callable[[Chunk], Chunk]) -> Iterator[Answered]:
        strategy, dataset = self.strategy, self.dataset
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
            def prefetch(index: int) -> Future[Loaded] | None:
                if index >= len(chunks):
                    return None
                return pool.submit(load_chunk, dataset.load, chunks[index], strategy.atomic_chunks)

            upcoming = prefetch(0)
            for index in range(len(chunks)):
                chunk = admit(chunks[index])
                loaded = upcoming.result()
                upcoming = prefetch(index + 1)
                for part in ask_chunk(strategy, loaded, chunk):
                    yield Answered(chunk.index, part, last=False)
                yield Answered(chunk.index, [], last=True)

    def check_batching(self, dataset: Dataset, pending: list[Sample], log: Callable[[str], None]) -> None:
        from classbench import batching

        batching.check(lambda size: build_strategy(self.job, self.model, replace(self.context, batch_size=size)),
                       dataset, pending, log)

    def peak_gpu_gb(self) -> float | None:
        return self.model.peak_gpu_gb() if self.model is not None else None

    def execution(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": 1}

    def close(self) -> None:
        if self.owns_models:
            self.models.close()
