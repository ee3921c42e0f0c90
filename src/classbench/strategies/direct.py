"""The `direct` strategy: one look at each image, no prompt engineering, no answer parsing.

A classic classifier's own labels are mapped onto the target classes (the answer is its top-5
labels, the mapped label the target with the highest summed probability). A zero-shot image-text
model (CLIP, SigLIP) needs no mapping: it scores the target class names themselves, with text
embeddings prepared once per label set (the answer is its top-5 classes). Either way there is one
question per image (key `classify`) and the full target distribution is kept in the prediction's
detail (`scores`, in class order) for top-k and calibration metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from classbench.errors import UserError
from classbench.labelmap import build_label_map
from classbench.models.base import Classifier, ZeroShotModel
from classbench.settings import Settings
from classbench.strategies.base import Context, Item, Step, Strategy, scored_steps

KEY = "classify"


class DirectSettings(Settings):
    label_map: str | None = Field(default=None, description="explicit `class: [model labels]` mapping file "
                                                             "(edit the run's label_map.json)")
    map_threshold: float = Field(default=0.5, ge=-1.0, le=1.0, description="minimum name similarity for a "
                                 "model label to count toward a class")

    @field_validator("label_map")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        """Resolved, so the run's identity does not depend on the working directory."""
        return None if value is None else str(Path(value).expanduser().resolve())


class _OneLook(Strategy[DirectSettings]):
    """One question per image (`classify`): the answer is the top-5 labels, the detail every class's score."""

    name = "direct"
    atomic_chunks = True

    def scores(self, images: list[Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(the model's own probabilities, the target classes' scores, the names of the model's labels)."""
        raise NotImplementedError

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        if not items:
            return
        started = perf_counter()
        probabilities, scores, names = self.scores([item.image for item in items])
        latency = (perf_counter() - started) / len(items)
        yield from scored_steps(items, KEY, self.context.classes, probabilities, names, scores, latency)


class MappedLabels(_OneLook):
    """A classic classifier: its own labels mapped onto the target classes (`labelmap`)."""

    needs = "classify"
    model: Classifier

    def __init__(self, model: Classifier, settings: DirectSettings, context: Context) -> None:
        super().__init__(model, settings, context)
        self.map = build_label_map(
            model.labels,
            context.classes,
            background=context.background,
            mapping_file=Path(settings.label_map) if settings.label_map else None,
            threshold=settings.map_threshold,
        )
        self.matrix = self.map.matrix()
        if context.out is not None:
            path = Path(context.out) / "label_map.json"
            path.write_text(json.dumps(self.map.to_json(model.labels), indent=1, ensure_ascii=False) + "\n")

    def describe(self) -> dict[str, Any]:
        rules: dict[str, int] = {}
        for _, rule in self.map.assignment.values():
            rules[rule] = rules.get(rule, 0) + 1
        return {"name": self.name, "label_map_rules": rules, "label_map_file": "label_map.json"}

    def scores(self, images: list[Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        probabilities = self.model.classify(images)
        return probabilities, probabilities @ self.matrix, [label.name for label in self.model.labels]


class ZeroShot(_OneLook):
    """An image-text model scores the class names themselves: no label mapping."""

    needs = "zero_shot"
    model: ZeroShotModel

    def __init__(self, model: ZeroShotModel, settings: DirectSettings, context: Context) -> None:
        super().__init__(model, settings, context)
        if settings.label_map is not None:
            raise UserError(f"--label-map maps a classifier's own labels; {model.model_id} scores your class names "
                            "directly and has none to map. Drop --label-map.")
        self.zero_shot = model.prepare_classes(context.classes, Path(context.out) if context.out else None)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "zero_shot": self.zero_shot}

    def scores(self, images: list[Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        probabilities = self.model.classify_classes(images, self.context.classes)
        return probabilities, probabilities, list(self.context.classes)
