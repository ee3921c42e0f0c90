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

from classbench.labelmap import build_label_map
from classbench.models.base import Classifier, ZeroShotModel
from classbench.store import Question
from classbench.strategies.base import Context, Item, Step, Strategy

KEY = "classify"


class Direct(Strategy):
    name = "direct"
    settings = frozenset({"label_map", "map_threshold"})
    needs = ("classify", "zero_shot")
    atomic_chunks = True
    model: Classifier | ZeroShotModel

    def __init__(self, model: Classifier | ZeroShotModel, context: Context) -> None:
        super().__init__(model, context)
        self.zero_shot: dict[str, Any] | None = None
        if "zero_shot" in model.capabilities:
            self.zero_shot = model.prepare_classes(context.classes, Path(context.out) if context.out else None)
            return
        self.map = build_label_map(
            model.labels,
            context.classes,
            background=context.background,
            mapping_file=Path(context.label_map) if context.label_map else None,
            threshold=context.map_threshold,
        )
        self.matrix = self.map.matrix()
        if context.out is not None:
            path = Path(context.out) / "label_map.json"
            path.write_text(json.dumps(self.map.to_json(model.labels), indent=1, ensure_ascii=False) + "\n")

    def describe(self) -> dict[str, Any]:
        if self.zero_shot is not None:
            return {"name": self.name, "zero_shot": self.zero_shot}
        rules: dict[str, int] = {}
        for _, rule in self.map.assignment.values():
            rules[rule] = rules.get(rule, 0) + 1
        return {"name": self.name, "label_map_rules": rules, "label_map_file": "label_map.json"}

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        if not items:
            return
        started = perf_counter()
        classes = self.context.classes
        images = [item.image for item in items]
        if self.zero_shot is not None:
            probabilities = scores = self.model.classify_classes(images, classes)
            names = classes
        else:
            probabilities = self.model.classify(images)
            scores = probabilities @ self.matrix
            names = [label.name for label in self.model.labels]
        latency = (perf_counter() - started) / len(items)
        for item, source, target in zip(items, probabilities, scores):
            best = int(np.argmax(target))
            top = np.argsort(-source)[:5]
            answer = json.dumps({names[i]: round(float(source[i]), 5) for i in top})
            question = Question(
                key=KEY,
                answer=answer,
                label=classes[best],
                latency_s=latency,
            )
            detail = {"scores": [round(float(value), 6) for value in target]}
            yield Step(item=item, questions=[question], prediction=classes[best], final=True, detail=detail)
