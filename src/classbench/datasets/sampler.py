"""Seeded class subsets and per-class caps that nest and reproduce.

Nesting: the classes are put in one seeded order and an N-class subset is the first N of it
(after the background class, which is always kept and counts among the N), so with one seed the
10-class subset lies inside the 25-class one. Images per class are ordered by a seed derived
from the run seed and the class name alone, so a class contributes the same images at every N.
Everything is ordered from sorted ids with `random.Random`, which gives the same sequence on any
machine and Python version.

Shots (labelled images a probe learns from) are the first K of each class's seeded order and the
evaluation images the next `per_class`, so shots are never evaluated, and the same K gives the same
shots at every class count and every cap. With no shots the selection is exactly as without them.

An explicit class list (`--class-list FILE`) replaces the seeded order with the list's own order
(the background class still first), so `--classes N` takes its first N and a sweep over a list
nests as a seeded one does; per-class images are chosen exactly as without a list.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from classbench.datasets.base import Dataset, Sample
from classbench.datasets.labels import folder_label
from classbench.errors import UserError


@dataclass(frozen=True)
class Selection:
    classes: list[str]
    samples: list[Sample]
    background: str | None
    shots: list[Sample] = field(default_factory=list)
    """Held out of `samples`: per class (in class order), the first K of its seeded order."""


def select(
    dataset: Dataset,
    n_classes: int | None = None,
    per_class: int | None = None,
    seed: int = 0,
    background: str | None = None,
    shots: int = 0,
    class_list: list[str] | None = None,
) -> Selection:
    if background is not None and background not in dataset.classes:
        raise UserError(
            f"--background {background!r} is not a class of {dataset.name}; "
            f"classes are: {_preview(dataset.classes)}"
        )
    if class_list is not None:
        classes = listed_order(dataset, class_list, background)
    else:
        classes = class_order(dataset.classes, seed, background)
    if n_classes is not None:
        if n_classes < 1 or n_classes > len(classes):
            what = "the class list names" if class_list is not None else "the dataset has"
            raise UserError(f"--classes {n_classes}: {what} {len(classes)} classes (with images)")
        if background is not None and n_classes < 2:
            raise UserError("--classes must be at least 2 when a background class is kept")
        classes = classes[:n_classes]
    groups = dataset.by_class()
    chosen: list[Sample] = []
    held_out: list[Sample] = []
    for name in sorted(classes):
        members = sorted(groups[name], key=lambda sample: sample.id)
        random.Random(_class_seed(seed, name)).shuffle(members)
        held_out.extend(members[:shots])
        members = members[shots:]
        chosen.extend(members[:per_class] if per_class is not None else members)
    chosen.sort(key=lambda sample: sample.id)
    random.Random(seed).shuffle(chosen)
    return Selection(classes=sorted(classes), samples=chosen, background=background, shots=held_out)


def class_order(classes: list[str], seed: int, background: str | None) -> list[str]:
    """The seeded order whose prefixes are the nested subsets (background first)."""
    regular = sorted(name for name in classes if name != background)
    random.Random(seed).shuffle(regular)
    return ([background] if background is not None else []) + regular


def listed_order(dataset: Dataset, class_list: list[str], background: str | None) -> list[str]:
    """The list's classes in its own order, background first; a line may also be a class's folder name."""
    known = set(dataset.classes)
    resolved: list[str] = []
    unknown: list[str] = []
    for line in class_list:
        name = line if line in known else folder_label(line)
        if name not in known:
            unknown.append(line)
        elif name in resolved:
            raise UserError(f"--class-list: {line!r} names the class {name!r} a second time")
        else:
            resolved.append(name)
    if unknown:
        raise UserError(f"--class-list: {len(unknown)} name(s) are not classes of {dataset.name}: "
                        f"{_preview(unknown, 5)}; its classes are: {_preview(dataset.classes)} "
                        "(`classbench datasets` lists them all)")
    if not resolved:
        raise UserError("--class-list: the file names no class")
    regular = [name for name in resolved if name != background]
    return ([background] if background is not None else []) + regular


def read_class_list(path: str | Path) -> list[str]:
    """One class per line; blank lines and lines starting with # are skipped."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8-sig")
    except OSError as error:
        raise UserError(f"--class-list {path}: {error.strerror or error}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _class_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{name}".encode()).digest()[:8], "big")


def _preview(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")
