"""Class-count sweeps: accuracy against the number of classes, one resumable run per point.

A sweep is the product models × strategies × class counts. Each point is an ordinary run (its
spec is the sweep's settings with `classes=N`) in its own folder, `OUT/<model>-<strategy>/n<N>/`,
so a killed sweep resumes point by point and question by question, and any point can be opened
with `classbench report` like a run of its own. The sampler nests class subsets and keeps each
class's images fixed across N for one seed, so the points compare like with like.

Points are executed by a function the caller passes in (the CLI runs each point's spec exactly as
`classbench run` does, sharing one loaded model between the points of a model), so a sweep point
is what `classbench run` would produce with the same settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classbench.datasets.cache import DatasetCache
from classbench.errors import UserError
from classbench.spec import RunSpec


@dataclass(frozen=True)
class Point:
    spec: RunSpec
    folder: Path


def parse_sizes(text: str) -> list[int]:
    """`10,25,50` → [10, 25, 50]: sorted, without repeats, every one at least 1."""
    sizes: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            size = int(part)
        except ValueError:
            raise UserError(f"--classes {text!r}: expected class counts separated by commas, e.g. 10,25,50") from None
        if size < 1:
            raise UserError(f"--classes {text!r}: every class count must be at least 1 (got {size})")
        sizes.add(size)
    if not sizes:
        raise UserError("--classes: give at least one class count, e.g. --classes 10,25,50")
    return sorted(sizes)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def point_folder(out: Path, spec: RunSpec) -> Path:
    return out / f"{slug(spec.model.name)}-{slug(spec.strategy.name)}" / f"n{spec.sample.classes}"


def plan(bases: Sequence[RunSpec], sizes: Sequence[int], out: Path) -> list[Point]:
    """One point per base spec (a model × strategy) and class count, in the order they will run."""
    points = []
    for base in bases:
        for size in sizes:
            spec = base.with_classes(size)
            points.append(Point(spec, point_folder(out, spec)))
    folders = [point.folder for point in points]
    if len(set(folders)) != len(folders):
        raise UserError("two sweep points map to the same folder: give each --model and --strategy once")
    return points


def check_sizes(spec: RunSpec, sizes: Sequence[int], datasets: DatasetCache | None = None) -> None:
    """Fail before the first point runs, not after hours, when a class count cannot be sampled.
    `datasets`: the cache the points will open the dataset from, so the check costs no scan."""
    from classbench.datasets import read_class_list, select

    dataset = (datasets or DatasetCache()).open(spec)
    class_list = read_class_list(spec.sample.class_list) if spec.sample.class_list else None
    for size in sizes:
        try:
            select(dataset, size, spec.sample.per_class, spec.sample.seed, spec.sample.background,
                   class_list=class_list)
        except UserError as error:
            raise UserError(f"sweep point N={size}: {error}") from None


def pending(points: Sequence[Point]) -> list[Point]:
    """The points with work left (a finished point is known from its store, without the dataset)."""
    from classbench.runner import done_without_data

    return [point for point in points if done_without_data(point.spec, point.folder) is None]


def run_points(points: Sequence[Point], execute: Callable[[Point], dict[str, Any]],
               log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run each point; `execute` returns the point's metrics, kept with the folder they came from."""
    results = []
    for index, point in enumerate(points, 1):
        log(f"sweep point {index}/{len(points)}: {point.spec.model.name} · {point.spec.strategy.name} · "
            f"{point.spec.sample.classes} classes → {point.folder}")
        results.append({**execute(point), "folder": str(point.folder)})
    return results
