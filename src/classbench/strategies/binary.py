"""The `binary` strategy: "is the {class} in this photo?", one class at a time, until a yes.

The background class is never asked about. The other classes are asked in a seeded order per
image (SHA-256 of run seed and image id; `--binary-order fixed` asks in class-list order), and
asking stops at the first yes, whose class is the prediction. With a background class that is at
most N−1 questions, and no yes means background; without one, every class may be asked, and no yes
is the explicit prediction `(none)`, which counts as wrong. An answer that is neither yes nor no
(`parse_yes_no`) counts as not-yes and is reported as invalid.

Keys are `ask:<class>`. A chunk is asked in rounds: round r asks every image still without a yes
its r-th class, in calls of `batch_size`. A question the model could not answer ends the image as
a failed model error, retried by the next run; answered questions are never asked again.

With a backend that shares prefixes, `binary_shared.SharedPrefixBinary` asks a chunk's questions
over shared prefixes instead, with the same answers (see there).

Where an answer comes with the first token's log-probabilities (`openai:` models with
`--option top_logprobs=N` on a server that sends them), the question's detail also keeps `p_yes`
(`models/logprobs.yes_probability`: the listed tokens that read as yes against those that read as
yes or no), and the summary the mean p(yes) when the class asked about is the image's own and when
it is another. It is recorded, never decides: the prediction still comes from the generated text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from classbench.answers import parse_yes_no
from classbench.models.base import Generation, Generator
from classbench.models.logprobs import yes_probability
from classbench.records import Question, RunRecords
from classbench.settings import Settings
from classbench.strategies.asking import ask, check_template, failed_step, fill, question, seeded_order
from classbench.strategies.base import Context, Item, Step, Strategy

DEFAULT_PROMPT = "Answer the question in a single word: yes or no. Is the {class} in this photo?"
PREFIX = "ask:"
NONE = "(none)"
REPLIES = {True: "yes", False: "no", None: "invalid"}


class BinarySettings(Settings):
    prompt: str | None = Field(default=None, description="prompt template with {class} [default: the published prompt]")
    binary_order: Literal["seeded", "fixed"] = Field(default="seeded", description="seeded (per image) or fixed "
                                                                                    "(class-list) order of questions")
    max_new_tokens: int = Field(default=10, ge=1, description="longest answer, in tokens")


def stops(generation: Generation) -> bool:
    """An answer after which an image is asked nothing more: a yes, or a failed question."""
    return generation.error is not None or parse_yes_no(generation.text) is True


@dataclass
class Walk:
    """One image's way through its class order."""

    item: Item
    order: list[str]
    position: int = 0
    answered: dict[str, Question] = field(default_factory=dict)
    """The image's questions so far: those stored before the chunk, then those asked in it."""

    def __post_init__(self) -> None:
        self.answered = {**self.item.done, **self.answered}


class Binary(Strategy[BinarySettings]):
    """Round by round: round r asks every image still without a yes its r-th class."""

    name = "binary"
    needs = "generate"
    model: Generator

    def __init__(self, model: Generator, settings: BinarySettings, context: Context) -> None:
        super().__init__(model, settings, context)
        self.template = check_template(settings.prompt or DEFAULT_PROMPT, "{class}", self.name)
        self.askable = [name for name in context.classes if name != context.background]
        self.no_yes = context.background or NONE

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "prompt": self.template, "order": self.settings.binary_order,
                "no_yes": self.no_yes, "max_questions": len(self.askable),
                "max_new_tokens": self.settings.max_new_tokens}

    def order(self, image_id: str) -> list[str]:
        if self.settings.binary_order == "fixed":
            return list(self.askable)
        return seeded_order(self.askable, self.context.seed, image_id, "binary")

    def start(self, items: Sequence[Item]) -> tuple[list[Step], list[Walk]]:
        """The final steps of items that stored answers already decide, and the walks of the others."""
        decided, walks = [], []
        for item in items:
            walk = Walk(item, self.order(item.image_id))
            step = self.advance(walk)
            if step is None:
                walks.append(walk)
            else:
                decided.append(step)
        return decided, walks

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        decided, walks = self.start(items)
        yield from decided
        while walks:
            asks = [(walk, walk.item.image, fill(self.template, "{class}", walk.order[walk.position]))
                    for walk in walks]
            still = []
            for answers in ask(self.model, asks, self.context.batch_size, self.settings.max_new_tokens):
                for walk, prompt, generation in answers:
                    asked = self.question_for(walk, prompt, generation)
                    if asked.error:
                        yield failed_step(walk.item, [asked], asked.error)
                        continue
                    step = self.advance(walk, asked)
                    yield step or Step(item=walk.item, questions=[asked])
                    if step is None:
                        still.append(walk)
            walks = still

    def question_for(self, walk: Walk, prompt: str, generation: Generation) -> Question:
        name = walk.order[walk.position]
        reply = parse_yes_no(generation.text) if generation.error is None else None
        detail: dict[str, Any] = {"reply": REPLIES[reply], "round": walk.position}
        if generation.first_token_logprobs:
            p_yes = yes_probability(generation.first_token_logprobs)
            detail["p_yes"] = None if p_yes is None else round(p_yes, 6)
        return question(f"{PREFIX}{name}", prompt, generation, name if reply else None, detail)

    def advance(self, walk: Walk, asked: Question | None = None) -> Step | None:
        """Move past answered classes; a final step at the first yes or the end, else None."""
        new = [asked] if asked else []
        if asked:
            walk.answered[asked.key] = asked
        while walk.position < len(walk.order):
            previous = walk.answered.get(f"{PREFIX}{walk.order[walk.position]}")
            if previous is None:
                return None
            if (previous.detail or {}).get("reply") == "yes":
                return Step(item=walk.item, questions=new, prediction=walk.order[walk.position], final=True,
                            detail={"questions": walk.position + 1, "outcome": "yes"})
            walk.position += 1
        return Step(item=walk.item, questions=new, prediction=self.no_yes, final=True,
                    detail={"questions": walk.position, "outcome": "no yes"})


def summarise(run: RunRecords) -> dict[str, Any] | None:
    """Questions per image, images that got no yes, and answers that were neither yes nor no."""
    finished = [p for p in run.predictions if p.status != "failed"]
    label = {p.image: p.label for p in finished}
    asked: dict[str, int] = defaultdict(int)
    invalid = 0
    p_yes: dict[bool, list[float]] = {True: [], False: []}
    for image, q in run.questions:
        if q.key.startswith(PREFIX) and q.error is None:
            asked[image] += 1
            invalid += (q.detail or {}).get("reply") == "invalid"
            if image in label and (q.detail or {}).get("p_yes") is not None:
                p_yes[q.key[len(PREFIX):] == label[image]].append(q.detail["p_yes"])
    if not finished:
        return None
    counts = [asked[p.image] for p in finished]
    summary: dict[str, Any] = {
        "questions_per_image": sum(counts) / len(counts),
        "max_questions_per_image": max(counts),
        "images_with_no_yes": sum((p.detail or {}).get("outcome") == "no yes" for p in finished),
        "invalid_yes_no": invalid,
        "questions": sum(asked.values()),
    }
    if p_yes[True] or p_yes[False]:
        summary["mean_p_yes"] = {"own_class": sum(p_yes[True]) / len(p_yes[True]) if p_yes[True] else None,
                                 "other_classes": sum(p_yes[False]) / len(p_yes[False]) if p_yes[False] else None}
    return summary

def summary_line(summary: dict[str, Any]) -> str:
    line = (f"binary: {summary['questions_per_image']:.2f} questions per image "
            f"(max {summary['max_questions_per_image']}), {summary['images_with_no_yes']} images with no yes, "
            f"{summary['invalid_yes_no']} invalid yes/no answers")
    if "mean_p_yes" in summary:
        means = {key: "n/a" if value is None else f"{value:.3f}" for key, value in summary["mean_p_yes"].items()}
        line += f"; mean p(yes) {means['own_class']} for the image's class, {means['other_classes']} for others"
    return line
