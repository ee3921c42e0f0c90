"""The `direct` strategy: a classifier's own labels, mapped onto the target classes.

One question per image (key `classify`): the answer is the model's top-5 labels, the mapped
label is the target with the highest summed probability, and the full target distribution is
kept in the prediction's detail (`scores`, in class order) for top-k and calibration metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from classbench.labelmap import build_label_map
from classbench.models.base import Classifier
from classbench.store import Question
from classbench.strategies.base import Context, Item, Step, Strategy

KEY = "classify"


class Direct(Strategy):
    name = "direct"
    needs = "classify"
    atomic_chunks = True
    model: Classifier

    def __init__(self, model: Classifier, context: Context) -> None:
        super().__init__(model, context)
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
        rules: dict[str, int] = {}
        for _, rule in self.map.assignment.values():
            rules[rule] = rules.get(rule, 0) + 1
        return {"name": self.name, "label_map_rules": rules, "label_map_file": "label_map.json"}

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        if not items:
            return
        started = perf_counter()
        probabilities = self.model.classify([item.image for item in items])
        latency = (perf_counter() - started) / len(items)
        scores = probabilities @ self.matrix
        classes = self.context.classes
        for item, source, target in zip(items, probabilities, scores):
            best = int(np.argmax(target))
            top = np.argsort(-source)[:5]
            answer = json.dumps({self.model.labels[i].name: round(float(source[i]), 5) for i in top})
            question = Question(
                key=KEY,
                answer=answer,
                label=classes[best],
                latency_s=latency,
            )
            detail = {"scores": [round(float(value), 6) for value in target]}
            yield Step(item=item, questions=[question], prediction=classes[best], final=True, detail=detail)
