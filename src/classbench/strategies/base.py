"""What a strategy is: it turns a model and a label set into one prediction per image.

The runner hands a strategy a chunk of items (image, label, and the questions already answered
for it in the store) and records each `Step` the strategy yields in one transaction. A step
without a prediction saves progress inside an image (one shuffle of a closed-set question, say),
so a killed run resumes at question granularity: a strategy looks in `item.done` before asking.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image

from classbench.datasets.base import Sample
from classbench.errors import UserError
from classbench.models.base import Backend
from classbench.store import Question

if TYPE_CHECKING:
    from classbench.spec import RunSpec


@dataclass
class Item:
    image_id: str
    label: str
    image: Image.Image
    done: dict[str, Question] = field(default_factory=dict)


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
    """What a strategy knows about the run: the label set and the settings it may read."""

    classes: list[str]
    background: str | None
    seed: int
    options: dict[str, Any]
    out: Any = None  # the run folder, for files a strategy writes beside the store
    label_map: str | None = None
    map_threshold: float = 0.5
    prompt: str | None = None
    shuffles: int = 1
    binary_order: str = "seeded"
    max_new_tokens: int = 10
    score_norm: str = "sum"
    calibrate: bool = False
    batch_size: int = 16
    """Requests per model call; a strategy may split a chunk's questions into calls of this size."""
    shots: Sequence[Sample] = ()
    """Labelled samples held out of the evaluation set for strategies that learn (probe)."""
    load_image: Callable[[Sample], Image.Image] | None = None
    """Decodes a shot sample (the dataset's `load`); raises ImageLoadError for an unreadable one."""

    @classmethod
    def strategy_settings(cls) -> frozenset[str]:
        """The settings that only some strategies read (the rest concern every run)."""
        from classbench.spec import RunSpec

        general = {"classes", "background", "seed", "options", "batch_size", "shots"}
        return frozenset(f.name for f in fields(cls) if f.name in RunSpec.model_fields and f.name not in general)

    @classmethod
    def from_spec(cls, spec: RunSpec, **run_facts: Any) -> Context:
        """Every setting a strategy reads, taken from the spec by name, plus what the run found
        (classes, background, shots, the run folder, the image loader)."""
        settings = {f.name: getattr(spec, f.name) for f in fields(cls) if f.name in type(spec).model_fields}
        return cls(**{**settings, **run_facts})


class Strategy(ABC):
    name: ClassVar[str]
    needs: ClassVar[str | tuple[str, ...]]
    """The backend capability this strategy uses (a tuple: any one of them)."""
    options: ClassVar[frozenset[str]] = frozenset()
    """The `--option KEY=VALUE` keys this strategy reads."""
    settings: ClassVar[frozenset[str]] = frozenset()
    """The strategy-specific run settings (Context fields such as `shuffles`) this strategy reads."""
    atomic_chunks: ClassVar[bool] = False
    """True when a chunk is answered at once: the runner then writes it in one transaction, so a
    resumed run never splits a batch (and batch composition, hence numerics, stay identical)."""

    def __init__(self, model: Backend, context: Context) -> None:
        needs = (self.needs,) if isinstance(self.needs, str) else self.needs
        if not any(need in model.capabilities for need in needs):
            can = ", ".join(sorted(model.capabilities)) or "nothing"
            raise UserError(
                f"--strategy {self.name} needs a model that can {' or '.join(needs)}; {model.model_id} can {can}. "
                "`classbench models` lists which backend suits which strategy."
            )
        self.model = model
        self.context = context

    def describe(self) -> dict[str, Any]:
        """Prompts and settings, stored as provenance."""
        return {"name": self.name}

    @abstractmethod
    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        """Yield steps for the items; every item must end with one final step."""
