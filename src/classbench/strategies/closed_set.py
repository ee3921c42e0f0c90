"""The `closed-set` strategy: the class list is in the prompt; the model names one.

Each image is asked `--shuffles` K times (keys `shuffle:0` … `shuffle:K-1`), each time with the
class names in a seeded order (SHA-256 of run seed, image id and shuffle index), so that where a
name sits in the list cannot decide the answer. Every trial stores its order, raw answer, mapped
label and the position (0-based) of the chosen name in that order.

The vote: answers that map to no class (invalid, ambiguous) do not vote; the label with most votes
wins; a tie goes to the tied label answered in the earliest shuffle, so K=1 is the plain answer
and the rule never depends on class names or batch order. No valid vote: the image is invalid.

A question the model could not answer (a `Generation.error`) is stored with its error and ends the
image as a failed model error, so the next run asks it again; stored answers are never re-asked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import Field

from classbench.answers import AnswerMapper
from classbench.models.base import Generator
from classbench.records import Question, RunRecords
from classbench.settings import Settings
from classbench.strategies.asking import ask, check_template, failed_step, fill, question, seeded_order
from classbench.strategies.base import Context, Item, Step, Strategy

DEFAULT_PROMPT = ("Question: Answer this question in a single word: What type of object is in this photo? "
                  "Choose one from {classes}. Answer:")
PREFIX = "shuffle:"
TIE_BREAK = "earliest shuffle among the tied labels"


class ClosedSetSettings(Settings):
    prompt: str | None = Field(default=None, description="prompt template with {classes} [default: the published prompt]")
    shuffles: int = Field(default=1, ge=1, description="ask each image K times, class names in a seeded order; "
                                                        "majority vote")
    max_new_tokens: int = Field(default=10, ge=1, description="longest answer, in tokens")


class ClosedSet(Strategy[ClosedSetSettings]):
    name = "closed-set"
    needs = "generate"
    model: Generator

    def __init__(self, model: Generator, settings: ClosedSetSettings, context: Context) -> None:
        super().__init__(model, settings, context)
        self.template = check_template(settings.prompt or DEFAULT_PROMPT, "{classes}", self.name)
        self.mapper = AnswerMapper(context.classes)
        self.shuffles = settings.shuffles

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "prompt": self.template, "shuffles": self.shuffles, "tie_break": TIE_BREAK,
                "max_new_tokens": self.settings.max_new_tokens}

    def order(self, image_id: str, shuffle: int) -> list[str]:
        return seeded_order(self.context.classes, self.context.seed, image_id, "closed-set", shuffle)

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        asks = []
        answered: dict[int, dict[str, Question]] = {id(item): dict(item.done) for item in items}
        for item in items:
            missing = [k for k in range(self.shuffles) if f"{PREFIX}{k}" not in item.done]
            if not missing:
                yield self._final(item, answered[id(item)], [])
            for k in missing:
                order = self.order(item.image_id, k)
                asks.append(((item, k, order), item.image, fill(self.template, "{classes}", ", ".join(order))))
        left = Counter(id(item) for (item, _, _), _, _ in asks)
        failed: set[int] = set()
        pending = list(asks)
        while pending:
            call, pending = _take(pending, self.context.batch_size, failed)
            for answers in ask(self.model, call, len(call) or 1, self.settings.max_new_tokens):
                by_item: dict[int, tuple[Item, list[Question]]] = {}
                for (item, k, order), prompt, generation in answers:
                    mapped = self.mapper.map(generation.text) if generation.error is None else None
                    label = mapped.label if mapped else None
                    detail = {"order": order, "position": order.index(label) if label else None,
                              "how": mapped.how if mapped else None}
                    by_item.setdefault(id(item), (item, []))[1].append(
                        question(f"{PREFIX}{k}", prompt, generation, label, detail))
                for key, (item, questions) in by_item.items():
                    left[key] -= len(questions)
                    error = next((q.error for q in questions if q.error), None)
                    answered[key].update({q.key: q for q in questions if q.error is None})
                    if error:
                        failed.add(key)
                        yield failed_step(item, questions, error)
                    elif left[key] == 0:
                        yield self._final(item, answered[key], questions)
                    else:
                        yield Step(item=item, questions=questions)

    def _final(self, item: Item, trials: dict[str, Question], new: list[Question]) -> Step:
        labels = [trials[f"{PREFIX}{k}"].label for k in range(self.shuffles)]
        winner, votes = vote(labels)
        detail = {"votes": dict(votes), "agreement": votes[winner] / len(labels) if winner else 0.0}
        return Step(item=item, questions=new, prediction=winner, final=True, detail=detail)


def summarise(run: RunRecords) -> dict[str, Any] | None:
    """Vote agreement, and how often the chosen name sat at each position of the list."""
    n_classes = len(run.classes)
    by_image: dict[str, list[Question]] = defaultdict(list)
    for image, q in run.questions:
        if q.key.startswith(PREFIX) and q.error is None:
            by_image[image].append(q)
    if not by_image or not n_classes:
        return None
    agreement, unanimous = [], 0
    positions = [0] * n_classes
    for trials in by_image.values():
        winner, votes = vote([q.label for q in trials])
        share = votes[winner] / len(trials) if winner else 0.0
        agreement.append(share)
        unanimous += share == 1.0
        for q in trials:
            position = (q.detail or {}).get("position")
            if position is not None:
                positions[position] += 1
    chosen = sum(positions)
    return {
        "shuffles": run.strategy.get("shuffles"),
        "vote_agreement": sum(agreement) / len(agreement),
        "unanimous_share": unanimous / len(agreement),
        "positional_bias": {
            "answers": chosen,
            "uniform_share": 1 / n_classes,
            "share_by_position": [count / chosen if chosen else 0.0 for count in positions],
            "count_by_position": positions,
        },
    }


def summary_line(summary: dict[str, Any]) -> str:
    bias = summary["positional_bias"]
    shares = " ".join(f"{i + 1}:{share:.2f}" for i, share in enumerate(bias["share_by_position"]))
    return (f"closed-set: vote agreement {summary['vote_agreement']:.3f} "
            f"({summary['unanimous_share']:.0%} unanimous, {summary['shuffles']} shuffles); "
            f"answer position shares {shares} (uniform {bias['uniform_share']:.2f})")


def vote(labels: Sequence[str | None]) -> tuple[str | None, Counter[str]]:
    """The majority label and the vote counts (see the module docstring for the tie rule)."""
    votes = Counter(label for label in labels if label is not None)
    if not votes:
        return None, votes
    best = max(votes.values())
    return next(label for label in labels if label is not None and votes[label] == best), votes


def _take(pending: list[Any], size: int, failed: set[int]) -> tuple[list[Any], list[Any]]:
    """The next call's questions, skipping images that already failed in this chunk."""
    live = [entry for entry in pending if id(entry[0][0]) not in failed]
    return live[:size], live[size:]
