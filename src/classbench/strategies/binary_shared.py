"""Binary over shared prefixes: a chunk's questions in one `generate_shared` call.

With a backend that shares prefixes (`shared_prefix`: the transformers backend), each image and
the prompt's common start are computed once, and an image's questions are asked in a few waves
along its order until a yes (or a failed question) ends it; the stop rule is then applied in the
same order to the answers, and only the questions up to the first yes are stored. The answers are
those of `generate`, so predictions, stored questions and their count equal the round-by-round way
(`binary.Binary`); questions after the first yes within its wave are computed and dropped, which
costs less than a round per question.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from classbench.models.base import Generation
from classbench.records import Question
from classbench.strategies.asking import failed_step, fill
from classbench.strategies.base import Item, Step
from classbench.strategies.binary import PREFIX, Binary, Walk, stops


class SharedPrefixBinary(Binary):
    needs = "shared_prefix"

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        decided, walks = self.start(items)
        yield from decided
        if not walks:
            return
        names = [[name for name in walk.order[walk.position:] if f"{PREFIX}{name}" not in walk.answered]
                 for walk in walks]
        prompts = [[fill(self.template, "{class}", name) for name in asked] for asked in names]
        answers = self.model.generate_shared([(walk.item.image, asked) for walk, asked in zip(walks, prompts)],
                                             self.settings.max_new_tokens, stop=stops)
        for walk, asked, questions, generations in zip(walks, names, prompts, answers, strict=True):
            if not (len(generations) == len(questions) or 0 < len(generations) < len(questions)
                    and stops(generations[-1])):
                raise RuntimeError(f"{self.model.model_id} answered {len(generations)} of {len(questions)} "
                                   f"questions about {walk.item.image_id}, the last not a yes")
            yield self.stop_at_first_yes(walk, dict(zip(asked, zip(questions, generations))))

    def stop_at_first_yes(self, walk: Walk, answers: dict[str, tuple[str, Generation]]) -> Step:
        """Walk the order through answers computed at once; store the questions up to the first yes."""
        spent = sum(generation.latency_s or 0.0 for _, generation in answers.values())
        new: list[Question] = []
        step = None
        while step is None:
            asked = self.question_for(walk, *answers[walk.order[walk.position]])
            new.append(asked)
            if asked.error:
                step = failed_step(walk.item, new, asked.error)
                break
            step = self.advance(walk, asked)
        # The time of the answers past the first yes belongs to the image too.
        return replace(step, questions=[replace(q, latency_s=spent / len(new)) for q in new])
