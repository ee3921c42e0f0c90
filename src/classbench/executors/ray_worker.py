"""One Ray worker: an actor that holds one loaded model, builds a run's strategy, and answers chunks.

It rebuilds everything from the run's serialisable record (`Job`) and never opens the store or
the run folder: files a strategy writes beside the store (a label map, a fitted probe) go to a
private scratch folder and are handed back to the driver, which writes them; files already in the
run folder come from the driver. Images come by reference (the worker opens the dataset at the
same path) or, with `--ship-images`, as the original file bytes.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
from pathlib import Path
from time import perf_counter
from typing import Any

from classbench import images, strategies
from classbench.datasets.base import Dataset, Sample
from classbench.executors import Chunk, Job, Record, Started
from classbench.executors.local import ModelPool, build_strategy, context_for, started
from classbench.executors.shipping import Shipped, unpack
from classbench.executors.work import ask_chunk, load_chunk
from classbench.strategies.base import Strategy


class Worker:
    """The actor's body (`ray.remote` wraps it in `executors.ray`). Two calls may run at once: one
    decodes the next chunk while the other holds the model."""

    def __init__(self, paths: list[str], registries: dict[str, dict[str, Any]]) -> None:
        sys.path.extend(path for path in paths if path not in sys.path)
        from classbench import models

        for name, entry in registries.get("models", {}).items():
            models.REGISTRY.setdefault(name, entry)
        for name, entry in registries.get("strategies", {}).items():
            strategies.REGISTRY.setdefault(name, entry)
        self.models = ModelPool()
        self.model_lock = threading.Lock()
        self.scratch = Path(tempfile.mkdtemp(prefix="classbench-worker-"))
        self.strategy: Strategy | None = None
        self.dataset: Dataset | None = None
        self.dataset_key: str | None = None
        self.shots: dict[str, Shipped] | None = None

    def where(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node": socket.gethostname(), "gpus": [str(g) for g in ray.get_gpu_ids()]}

    def load(self, job: Job) -> float:
        """Load the job's model (nothing when it is the one held); the seconds it took."""
        with self.model_lock:
            _match_threads(job)
            return self.models.get(job.spec)[1]

    def start(self, job: Job, files: dict[str, bytes],
              shots: dict[str, Shipped] | None) -> tuple[Started, dict[str, bytes]]:
        """Build the job's strategy; return what the runner stores, and the files it wrote."""
        with self.model_lock:
            _match_threads(job)
            runtime = job.spec.runtime
            images.set_limits(runtime.max_image_pixels, runtime.max_aspect_ratio)  # as the driver's run does
            model, load_s = self.models.get(job.spec)
            self.shots = shots
            if shots is None:
                self._open_dataset(job)
            folder = Path(tempfile.mkdtemp(dir=self.scratch))
            for name, data in files.items():
                (folder / name).write_bytes(data)
            self.strategy = build_strategy(job, model, context_for(job, folder, self._load_shot))
            written = {path.name: path.read_bytes() for path in sorted(folder.iterdir())
                       if path.is_file() and files.get(path.name) != path.read_bytes()}
            return started(job, model, self.strategy, load_s), written

    def answer(self, chunk: Chunk, shipped: dict[str, Shipped] | None) -> tuple[list[Record], float, float | None]:
        """The chunk's records, the seconds spent on it, and the model's peak GPU memory."""
        strategy = self.strategy
        load = (lambda sample: unpack(shipped, sample)) if shipped is not None else self.dataset.load
        loaded = load_chunk(load, chunk, strategy.atomic_chunks)
        with self.model_lock:
            started = perf_counter()
            records = [record for part in ask_chunk(strategy, loaded, chunk) for record in part]
            return records, perf_counter() - started, strategy.model.peak_gpu_gb()

    def _open_dataset(self, job: Job) -> None:
        """What loads the run's images by id: a folder tree or manifest needs only its root (no scan)."""
        from classbench.datasets.cache import image_source

        key = job.spec.dataset.model_dump_json()
        if key != self.dataset_key:
            self.dataset, self.dataset_key = image_source(job.spec), key

    def _load_shot(self, sample: Sample) -> Any:
        return unpack(self.shots, sample) if self.shots is not None else self.dataset.load(sample)


def _match_threads(job: Job) -> None:
    """Compute with the driver's number of CPU threads, so a score's last digits match a local run's."""
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
