"""A strategy written as a newcomer would: one module, two settings, one registry line (see
tests/test_components.py). It takes a classifier's top label when the model is sure enough of it,
and otherwise answers a fallback class."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from pydantic import Field

from classbench.answers import AnswerMapper
from classbench.records import Question
from classbench.settings import Settings
from classbench.strategies.base import Item, Step, Strategy


class ConfidentSettings(Settings):
    min_probability: float = Field(default=0.5, ge=0, le=1, description="trust the top label from this probability")
    fallback: str | None = Field(default=None, description="the class to answer below it [default: invalid]")


class Confident(Strategy[ConfidentSettings]):
    name = "confident"
    needs = "classify"

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        mapper = AnswerMapper(self.context.classes)
        probabilities = self.model.classify([item.image for item in items])
        for item, row in zip(items, probabilities):
            best = int(np.argmax(row))
            name = self.model.labels[best].name
            sure = float(row[best]) >= self.settings.min_probability
            label = mapper.map(name).label if sure else self.settings.fallback
            yield Step(item=item, questions=[Question(key="top", answer=name, label=label)], prediction=label,
                       final=True)
