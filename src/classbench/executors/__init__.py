"""Executors: how chunks of pending images reach loaded models.

The runner is the single writer of a run's store. It cuts the sampled images into fixed chunks
(the same slices whatever executes them, so batches, hence answers, never depend on the executor
or the number of workers), hands them to an executor, and writes every record that comes back.
An executor only answers: `start` loads the model and builds the strategy (wherever that
happens), `answer` yields each chunk's plain records as they arrive, in any order.

- `local` (default): in this process, decoding one chunk ahead in a thread.
- `ray`: on Ray actors, each holding one loaded model (`classbench.executors.ray`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classbench.datasets.base import Dataset, Sample
from classbench.errors import UserError
from classbench.records import Question, Record
from classbench.spec import RunSpec, RuntimeSpec


@dataclass(frozen=True)
class Chunk:
    """A fixed slice of the sampled order, with what the store already holds for it."""

    index: int
    samples: tuple[Sample, ...]
    finished: frozenset[str]
    """Images of the slice that need no more work (an atomic strategy still sees them, for its batch)."""
    done: Mapping[str, Mapping[str, Question]] = field(default_factory=dict)
    """Questions answered in earlier sessions, per image; filled in when the chunk is handed out."""


@dataclass(frozen=True)
class Answered:
    """Records of one chunk; `last` when the chunk is complete (a local run yields a chunk step by step)."""

    index: int
    records: list[Record]
    last: bool = True


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to rebuild a run's model and strategy, as plain picklable values."""

    spec: RunSpec
    """The run's spec, with the dataset's prompt templates applied (what the model is loaded with)."""
    classes: list[str]
    background: str | None
    shots: list[Sample]
    threads: int | None = None
    """The driver's CPU threads for torch: a worker computes with as many, because on a CPU the
    number of threads changes how sums are split, hence the last digits of a score."""


@dataclass(frozen=True)
class Started:
    """What the runner stores about the loaded model and the built strategy."""

    model: dict[str, Any]
    strategy: dict[str, Any]
    model_id: str
    strategy_name: str
    load_s: float
    device: str


def chunks_of(samples: Sequence[Sample], batch_size: int, finished: set[str]) -> list[Chunk]:
    """The run's fixed slices that still hold work."""
    slices = [tuple(samples[start:start + batch_size]) for start in range(0, len(samples), batch_size)]
    return [Chunk(index, part, frozenset(sample.id for sample in part if sample.id in finished))
            for index, part in enumerate(slices) if any(sample.id not in finished for sample in part)]


class Executor(ABC):
    """Loads the model and strategy, then answers chunks. One executor may serve several runs (a
    sweep's points), keeping a model loaded while the next run uses the same one."""

    name: str

    @abstractmethod
    def start(self, job: Job, dataset: Dataset, out: Path) -> Started:
        """Load the model (if not loaded) and build the strategy for this run."""

    @abstractmethod
    def answer(self, chunks: Sequence[Chunk], admit: Callable[[Chunk], Chunk]) -> Iterator[Answered]:
        """Answer every chunk. `admit` is called just before a chunk is handed out: it may stop the run
        (a spending cap) and returns the chunk with its answered questions."""

    def check_batching(self, dataset: Dataset, pending: list[Sample], log: Callable[[str], None]) -> None:
        raise UserError(f"--check-batching compares answers in one process; drop --executor {self.name} for it")

    def peak_gpu_gb(self) -> float | None:
        return None

    def execution(self) -> dict[str, Any]:
        """How this session ran (executor, workers, GPUs, per-worker speed), for metrics.json."""
        return {"executor": self.name}

    def close(self) -> None:
        """Release models and workers."""


def make_executor(runtime: RuntimeSpec, models: Any = None) -> Executor:
    """The executor a spec's runtime asks for; `models` is the local model pool to use, if any."""
    if runtime.executor == "ray":
        from classbench.executors.ray import RayExecutor

        return RayExecutor(runtime)
    given = [flag for flag, value in (("--workers", runtime.workers != 1), ("--ray-address", runtime.ray_address),
                                      ("--gpus-per-worker", runtime.gpus_per_worker is not None),
                                      ("--ship-images", runtime.ship_images)) if value]
    if given:
        raise UserError(f"{given[0]} applies to Ray workers: add --executor ray (or drop {given[0]})")
    from classbench.executors.local import LocalExecutor

    return LocalExecutor(models)
