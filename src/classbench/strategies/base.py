"""What a strategy is: it turns a model and a label set into one prediction per image.

The runner hands a strategy a chunk of items (image, label, and the questions already answered
for it in the store) and records each `Step` the strategy yields in one transaction. A step
without a prediction saves progress inside an image (one shuffle of a closed-set question, say),
so a killed run resumes at question granularity: a strategy looks in `item.done` before asking.

Data flows one way: an `Item` is read-only to the strategy (what it asks during a chunk it keeps
in its own state), and a `Step` carries only plain records (`classbench.records`); the runner
alone writes them to the store.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeVar

from PIL import Image

from classbench.datasets.base import Sample
from classbench.errors import UserError
from classbench.models.base import Backend
from classbench.records import Question
from classbench.settings import Settings

S = TypeVar("S", bound=Settings)


@dataclass(frozen=True)
class Item:
    image_id: str
    label: str
    image: Image.Image
    done: Mapping[str, Question] = field(default_factory=lambda: MappingProxyType({}))
    """Questions answered before this chunk (from the store); read-only."""

    def __post_init__(self) -> None:
        if not isinstance(self.done, MappingProxyType):
            object.__setattr__(self, "done", MappingProxyType(dict(self.done)))


@dataclass(frozen=True)
class Step:
    item: Item
    questions: Sequence[Question]
    prediction: str | None = None
    final: bool = False
    status: str = "ok"
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class Context:
    """What a strategy learns from the run, beyond its own settings: the label set and the run's facts."""

    classes: list[str]
    background: str | None = None
    seed: int = 0
    batch_size: int = 16
    """Requests per model call; a strategy may split a chunk's questions into calls of this size."""
    out: Any = None
    """The run folder, for files a strategy writes beside the store (a label map, a fitted probe)."""
    shots: Sequence[Sample] = ()
    """Labelled samples held out of the evaluation set for strategies that learn (probe)."""
    load_image: Callable[[Sample], Image.Image] | None = None
    """Decodes a shot sample (the dataset's `load`); raises ImageLoadError for an unreadable one."""


class Strategy(ABC, Generic[S]):
    """One way of asking. Subclasses declare the backend capability they use (`needs`) and receive
    their validated settings (the class named by their registry entry)."""

    name: ClassVar[str]
    needs: ClassVar[str]
    """The backend capability this implementation uses; the registry picks the implementation whose
    capability the model has."""
    atomic_chunks: ClassVar[bool] = False
    """True when a chunk is answered at once: the runner then writes it in one transaction, so a
    resumed run never splits a batch (and batch composition, hence numerics, stay identical)."""

    def __init__(self, model: Backend, settings: S, context: Context) -> None:
        if self.needs not in model.capabilities:
            can = ", ".join(sorted(model.capabilities)) or "nothing"
            raise UserError(
                f"--strategy {self.name} needs a model that can {self.needs}; {model.model_id} can {can}. "
                "`classbench models` lists which backend suits which strategy."
            )
        self.model = model
        self.settings = settings
        self.context = context

    def describe(self) -> dict[str, Any]:
        """Prompts and settings, stored as provenance."""
        return {"name": self.name}

    @abstractmethod
    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        """Yield steps for the items; every item must end with one final step."""


def scored_steps(items: Sequence[Item], key: str, classes: Sequence[str], answers: Any,
                 answer_names: Sequence[str], scores: Any, latency_s: float) -> Iterator[Step]:
    """One final step per item for a strategy that scores every class at one look (direct, probe):
    the answer is the top-5 of `answers` by `answer_names`, the prediction the best of `scores`
    (over `classes`), kept whole in the detail for top-k and calibration metrics.
    `answers` and `scores` are arrays with one row per item."""
    import numpy as np

    for item, source, target in zip(items, answers, scores):
        best = int(np.argmax(target))
        top = np.argsort(-source)[:5]
        answer = json.dumps({answer_names[i]: round(float(source[i]), 5) for i in top})
        question = Question(key=key, answer=answer, label=classes[best], latency_s=latency_s)
        detail = {"scores": [round(float(value), 6) for value in target]}
        yield Step(item=item, questions=[question], prediction=classes[best], final=True, detail=detail)
