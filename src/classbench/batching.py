"""`classbench run --check-batching`: are the answers the same at batch size 1 and 8?

Batching pads prompts to one length; a model whose padding leaks into its numbers (a missing
attention mask, position ids that count pads, a kernel whose reductions depend on shape) answers
differently in a batch than alone, and a benchmark at batch 16 would then measure the batch, not
the model. A few images are asked both ways, in memory, before the long run; nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from classbench.datasets import Dataset, Sample
from classbench.errors import ImageLoadError
from classbench.strategies.base import Item, Strategy

CHECK_IMAGES = 4
SIZES = (1, 8)


StrategyAt = Callable[[int], Strategy]
"""Builds the run's strategy (its model, settings and run facts) for one batch size."""


def answers_at(make: StrategyAt, images: Sequence[tuple[Sample, object]],
               batch_size: int) -> dict[tuple[str, str], str | None]:
    """Every answer and prediction a strategy gives at one batch size, keyed by (image, question)."""
    strategy = make(batch_size)
    found: dict[tuple[str, str], str | None] = {}
    for start in range(0, len(images), batch_size):
        chunk = [Item(sample.id, sample.label, image) for sample, image in images[start:start + batch_size]]
        for step in strategy.run(chunk):
            for question in step.questions:
                found[(step.item.image_id, question.key)] = question.error or question.answer
            if step.final:
                found[(step.item.image_id, "(prediction)")] = step.prediction
    return found


def check(make: StrategyAt, dataset: Dataset, samples: Sequence[Sample], log: Callable[[str], None]) -> list[str]:
    """Compare batch sizes 1 and 8 on the first few readable images; log and return the differences."""
    images = []
    for sample in samples:
        if len(images) == CHECK_IMAGES:
            break
        try:
            images.append((sample, dataset.load(sample)))
        except ImageLoadError:
            continue
    small, large = (answers_at(make, images, size) for size in SIZES)
    differences = [f"{image} {key}: {small.get((image, key))!r} vs {large.get((image, key))!r}"
                   for image, key in sorted(set(small) | set(large)) if small.get((image, key)) != large.get((image, key))]
    if differences:
        log(f"warning: --check-batching: {len(differences)} answers differ between batch size {SIZES[0]} and "
            f"{SIZES[1]} on {len(images)} images (first: {differences[0]}). This model's numbers depend on the "
            "batch; use --batch-size 1 (slower) for results that do not.")
    else:
        log(f"check-batching: batch sizes {SIZES[0]} and {SIZES[1]} gave the same {len(small)} answers "
            f"on {len(images)} images")
    return differences
