"""What the strategies that ask a VLM in words share: seeded orders, prompt templates, batched asking.

Orders derive from (run seed, image id, purpose, index) through SHA-256, so they are the same on
every machine, Python version and resume, and independent of batch size and image order.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from classbench.errors import UserError
from classbench.models.base import Generation, GenerationRequest, Generator
from classbench.records import MODEL_ERROR, Question
from classbench.strategies.base import Item, Step

T = TypeVar("T")


def seeded_order(names: Sequence[str], seed: int, image_id: str, purpose: str, index: int = 0) -> list[str]:
    digest = hashlib.sha256(f"{seed}\x1f{image_id}\x1f{purpose}\x1f{index}".encode()).digest()
    order = list(names)
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


def check_template(template: str, placeholder: str, strategy: str) -> str:
    if placeholder not in template:
        raise UserError(f"--prompt for --strategy {strategy} must contain {placeholder} where the "
                        f"{'class list' if placeholder == '{classes}' else 'class name'} goes; got {template!r}")
    return template


def fill(template: str, placeholder: str, value: str) -> str:
    """Plain replacement, so other braces in a user's prompt need no escaping."""
    return template.replace(placeholder, value)


def ask(model: Generator, asks: Sequence[tuple[T, Any, str]], batch_size: int,
        max_new_tokens: int) -> Iterator[list[tuple[T, str, Generation]]]:
    """Ask (tag, image, prompt) questions in calls of `batch_size`, yielding each call's answers."""
    for start in range(0, len(asks), batch_size):
        part = asks[start:start + batch_size]
        requests = [GenerationRequest(image=image, prompt=prompt, max_new_tokens=max_new_tokens)
                    for _, image, prompt in part]
        generations = model.generate(requests)
        if len(generations) != len(requests):
            raise RuntimeError(f"{model.model_id} answered {len(generations)} of {len(requests)} requests")
        yield [(tag, prompt, generation) for (tag, _, prompt), generation in zip(part, generations)]


def question(key: str, prompt: str, generation: Generation, label: str | None = None,
             detail: dict[str, Any] | None = None) -> Question:
    if generation.attempts != 1:
        detail = {**(detail or {}), "attempts": generation.attempts}
    return Question(key=key, prompt=prompt, answer=generation.text, label=label, latency_s=generation.latency_s,
                    tokens_in=generation.tokens_in, tokens_out=generation.tokens_out, detail=detail,
                    error=generation.error)


def failed_step(item: Item, questions: list[Question], error: str) -> Step:
    """End an image as a model error, which the next run retries (see `store.MODEL_ERROR`)."""

    return Step(item=item, questions=questions, final=True, status="failed", detail={"error": MODEL_ERROR + error})
