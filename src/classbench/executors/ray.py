"""The Ray executor: chunks answered by Ray actors, each holding one loaded model.

The driver (this process) stays the single writer: it hands each worker up to two chunks at a
time (the same fixed slices as a local run, with the questions already answered for them) and
yields the records as they come back. A worker that dies (killed, out of memory, node lost) has
its chunks handed to another worker and is replaced; its unfinished chunks were never recorded,
so nothing is recorded twice and nothing is lost. Killing the driver loses only the chunks in
flight (Ray ends the driver's actors with it); the same command resumes from the store.

Ray's processes are started by `ray.init` (a local instance, through `subprocess.Popen`, which closes
every other file descriptor, so none holds the run folder's files or a lock on them) or already run
(a cluster); workers are started by Ray's own daemons, never forked from the driver, and never
open the store.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from time import perf_counter
from typing import Any

from classbench.datasets.base import Dataset
from classbench.errors import UserError
from classbench.executors import Answered, Chunk, Executor, Job, Started, shipping
from classbench.executors.local import model_key
from classbench.spec import RuntimeSpec
from classbench.store import STORE_NAME

IN_FLIGHT = 2
"""Chunks queued per worker: the next one is already there when a worker finishes one."""
DEATHS_PER_WORKER = 3
"""Worker deaths tolerated per worker before the run stops (it resumes with the same command)."""
DERIVED = ("metrics.json", "predictions.csv")
SEED_LIMIT = 256 * 1024**2
"""Run-folder files above this size are not sent to workers (strategies keep small files there)."""


@dataclass
class _Slot:
    number: int
    actor: Any
    ready: Any = None
    """The `start` call in flight; None once the worker has built the strategy."""
    where: Any = None
    replaces: int | None = None
    chunks: int = 0
    images: int = 0
    busy_s: float = 0.0
    in_flight: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def connect(address: str | None, workers: int) -> None:
    """Join the Ray cluster at `address` (`auto`, `ray://…`), or start a new local instance sized for
    `workers` (never joining a cluster by surprise, as a bare `ray.init()` would where one runs)."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'classbench[ray]'") from None
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False,
                     **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"--ray-address {address}" if address else "a local Ray instance"
        raise UserError(f"cannot start or join {where}: {error}. Check `ray status` on the head node") from None


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, runtime: RuntimeSpec) -> None:
        """Ray is started or joined at the first `start`, so a finished run (nothing to ask) costs nothing."""
        if importlib.util.find_spec("ray") is None:
            raise UserError("--executor ray needs Ray: pip install 'classbench[ray]'")
        self.runtime = runtime
        self.ray: Any = None
        self.gpus = 0.0
        self.slots: list[_Slot] = []
        self.retired: list[_Slot] = []
        """Workers that died during this run: their answers count in the figures."""
        self.numbered = 0
        self.deaths = 0
        self.key: str | None = None
        self.job: Job | None = None
        self.dataset: Dataset | None = None
        self.files: dict[str, bytes] = {}
        self.shots: dict[str, shipping.Shipped] | None = None
        self.gpu_peak: float | None = None
        self.wall_s = 0.0

    # --- starting workers ------------------------------------------------------------------------

    def _connect(self) -> None:
        import ray

        runtime = self.runtime
        connect(runtime.ray_address, runtime.workers)
        resources = ray.cluster_resources()
        gpus = runtime.gpus_per_worker
        self.gpus = gpus if gpus is not None else (1.0 if resources.get("GPU", 0) > 0 else 0.0)
        for name, needed in (("CPU", runtime.workers), ("GPU", self.gpus * runtime.workers)):
            if needed > resources.get(name, 0):  # Ray would wait for them for ever
                raise UserError(f"--workers {runtime.workers} need {needed:g} {name}s (1 CPU and --gpus-per-worker "
                                f"{self.gpus:g} GPU each) but the Ray cluster has {resources.get(name, 0):g}: "
                                "lower --workers or --gpus-per-worker, or add nodes")
        from classbench.executors.ray_worker import Worker

        self._died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                      ray.exceptions.OutOfMemoryError, ray.exceptions.NodeDiedError)
        self.actor_class = ray.remote(num_cpus=1, num_gpus=self.gpus, max_concurrency=2, max_restarts=0)(Worker)
        self.ray = ray

    def start(self, job: Job, dataset: Dataset, out: Path) -> Started:
        if self.ray is None:
            self._connect()
        job = replace(job, threads=_torch_threads())
        if self.runtime.ship_images:
            shipping.check(dataset)
        key = model_key(job.spec)
        if key != self.key:
            self._stop_all()
            self.key = key
        self.job, self.dataset, self.gpu_peak = job, dataset, None
        while len(self.slots) < self.runtime.workers:
            self.slots.append(self._new_slot())
        loads = [slot.actor.load.remote(job) for slot in self.slots]  # every worker loads at once
        self.files = _seed_files(out)
        self.shots = shipping.pack(dataset, job.shots) if self.runtime.ship_images else None
        self.deaths, self.retired = 0, []
        first = self.slots[0]
        try:
            load_s = self._get(loads[0])
            started, written = self._get(first.actor.start.remote(job, self.files, self.shots))
        except self._died as error:
            self._stop_all()
            raise UserError(f"the first Ray worker died while loading {job.spec.model.name} "
                            f"({type(error).__name__}); check its memory (`ray status`), then run the same "
                            "command again") from None
        for name, data in written.items():  # the driver writes the run folder, as it writes the store
            (out / name).write_bytes(data)
        self.files.update(written)
        self._start_rest()
        return replace(started, load_s=load_s)

    def _start_rest(self) -> None:
        """Build the strategy on the other workers (their models load meanwhile), replacing any that
        dies, so the chunks are spread over every worker from the first one on."""
        pending = {slot.actor.start.remote(self.job, self.files, self.shots): slot for slot in self.slots[1:]}
        while pending:
            [ref], _ = self.ray.wait(list(pending), num_returns=1)
            slot = pending.pop(ref)
            try:
                self._get(ref)
            except self._died as error:
                fresh = self._replace(slot, error)
                pending[fresh.actor.start.remote(self.job, self.files, self.shots)] = fresh

    def _new_slot(self, replaces: int | None = None) -> _Slot:
        actor = self.actor_class.remote([path for path in sys.path if path and Path(path).is_dir()],
                                        _registries(self.job))  # `start` sets the job before any slot is made
        self.numbered += 1
        return _Slot(self.numbered, actor, where=actor.where.remote(), replaces=replaces)

    def _get(self, ref: Any) -> Any:
        """A worker's result; a Python error raised in the worker is raised here as itself."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, (UserError, KeyboardInterrupt)):
                raise cause from None
            raise

    # --- answering --------------------------------------------------------------------------------

    def answer(self, chunks: Sequence[Chunk], admit: Callable[[Chunk], Chunk]) -> Iterator[Answered]:
        ray = self.ray
        queue = deque(chunks)
        running: dict[Any, tuple[_Slot, Chunk | None]] = {}
        for slot in self.slots:
            slot.chunks = slot.images = slot.in_flight = 0
            slot.busy_s = 0.0
        clock = perf_counter()

        def feed(slot: _Slot) -> None:
            while queue and slot.ready is None and slot.in_flight < IN_FLIGHT:
                chunk = admit(queue.popleft())
                images = shipping.pack(self.dataset, list(chunk.samples)) if self.runtime.ship_images else None
                running[slot.actor.answer.remote(chunk, images)] = (slot, chunk)
                slot.in_flight += 1

        for slot in self.slots:
            if slot.ready is not None:
                running[slot.ready] = (slot, None)
        try:
            for slot in self.slots:
                feed(slot)
            while running:
                [ref], _ = ray.wait(list(running), num_returns=1)
                slot, chunk = running.pop(ref)
                try:
                    result = self._get(ref)
                except self._died as error:
                    self._bury(slot, chunk, running, queue, error)
                    for other in self.slots:
                        feed(other)
                    continue
                if chunk is None:
                    slot.ready = None
                else:
                    records, busy_s, gpu = result
                    slot.in_flight -= 1
                    slot.chunks += 1
                    slot.images += sum(1 for _, _, prediction in records if prediction is not None)
                    slot.busy_s += busy_s
                    if gpu is not None:
                        self.gpu_peak = max(gpu, self.gpu_peak or 0.0)
                    yield Answered(chunk.index, records)
                feed(slot)
        finally:
            self.wall_s = perf_counter() - clock
            for ref in running:
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - a cancel that fails leaves a worker busy, nothing more
                    pass

    def _bury(self, slot: _Slot, failed: Chunk | None, running: dict[Any, tuple[_Slot, Chunk | None]],
              queue: deque[Chunk], error: Exception) -> None:
        """A worker died: its chunks go back to the front of the queue, a replacement starts."""
        held = [chunk for owner, chunk in running.values() if owner is slot and chunk is not None]
        lost = sorted([*held, *([failed] if failed is not None else [])], key=lambda chunk: chunk.index)
        for ref in [ref for ref, (owner, _) in running.items() if owner is slot]:
            running.pop(ref)
        queue.extendleft(reversed(lost))
        fresh = self._replace(slot, error)
        fresh.ready = fresh.actor.start.remote(self.job, self.files, self.shots)
        running[fresh.ready] = (fresh, None)

    def _replace(self, slot: _Slot, error: Exception) -> _Slot:
        """A new worker in a dead one's place; the run stops (cleanly, resumable) when workers keep dying."""
        self.deaths += 1
        self.slots.remove(slot)
        self.retired.append(slot)
        if self.deaths > DEATHS_PER_WORKER * self.runtime.workers:
            raise UserError(f"Ray workers died {self.deaths} times (the last: {type(error).__name__}: "
                            f"{str(error).splitlines()[0] if str(error) else ''}); the answers so far are stored. "
                            "Fix the cause (memory? a lost node?), then run the same command again to resume")
        fresh = self._new_slot(replaces=slot.number)
        self.slots.append(fresh)
        return fresh

    # --- reporting and closing -------------------------------------------------------------------

    def peak_gpu_gb(self) -> float | None:
        return self.gpu_peak

    def execution(self) -> dict[str, Any]:
        workers = []
        for slot in sorted([*self.slots, *self.retired], key=lambda slot: slot.number):
            if not slot.info:
                try:
                    slot.info = self.ray.get(slot.where, timeout=10)
                except Exception:  # noqa: BLE001 - a worker that cannot say where it runs is still counted
                    slot.info = {}
            workers.append({"worker": slot.number, **slot.info, "died": slot in self.retired,
                            "replaces": slot.replaces, "chunks": slot.chunks,
                            "images": slot.images, "busy_s": round(slot.busy_s, 3),
                            "images_per_s": round(slot.images / self.wall_s, 3) if self.wall_s else None})
        images = sum(worker["images"] for worker in workers)
        return {"executor": self.name, "workers": self.runtime.workers, "gpus_per_worker": self.gpus,
                "gpus": self.gpus * self.runtime.workers, "ray_address": self.runtime.ray_address or "local",
                "ship_images": self.runtime.ship_images, "worker_deaths": self.deaths,
                "wall_s": round(self.wall_s, 3), "images": images,
                "images_per_s": round(images / self.wall_s, 3) if self.wall_s else None, "per_worker": workers}

    def close(self) -> None:
        self._stop_all()

    def _stop_all(self) -> None:
        for slot in self.slots if self.ray is not None else []:
            try:
                self.ray.kill(slot.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.slots = []


def _seed_files(out: Path) -> dict[str, bytes]:
    """Files a strategy keeps beside the store (a label map, a fitted probe), for workers to read back."""
    if not out.is_dir():
        return {}
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())
            if path.is_file() and not path.name.startswith(STORE_NAME) and path.name not in DERIVED
            and path.stat().st_size <= SEED_LIMIT}


def _registries(job: Job) -> dict[str, dict[str, Any]]:
    """The registry entries of the job's model and strategy, so a component registered in the driver
    (a plugin) exists in the workers too."""
    from classbench import models, strategies

    prefix = models.split_name(job.spec.model.name)[0]
    return {"models": {prefix: models.REGISTRY[prefix]},
            "strategies": {job.spec.strategy.name: strategies.entry(job.spec.strategy.name)}}


def _torch_threads() -> int | None:
    """The CPU threads torch uses in this process (Ray starts its workers with one)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.get_num_threads()
