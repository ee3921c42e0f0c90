"""The `likelihood` strategy over an API: classes scored on the first answer token.

Over an API (a backend with `first_token_logprobs` but no `score`: `openai:` models) only the first
answer token's most likely alternatives come back, so each class is scored on how an answer to a
closed-set question starts:

- One question per image: the prompt lists the classes (`--prompt` with `{classes}`; without
  `--prompt`, the closed-set default prompt, since an unprompted answer rarely starts with a class
  name; a `--prompt` without `{classes}` is sent as it is), in the seeded order of closed-set's
  shuffle 0, so the question is exactly closed-set's first one. It asks for `top_logprobs` 20 (the
  most the OpenAI API gives) or `--option top_logprobs=N`.
- A listed token *reaches* a class when the token's text, normalised like an answer
  (`answers.normalise`, which drops case, punctuation and surrounding spaces) and with its spaces
  removed, is non-empty and begins the class's normalised name with its spaces removed (`tennis`
  and `ten` reach `tennis ball`; `cats` reaches `cat`; `catfish` does not reach `cat`). A token
  that is only an article (`a`, `an`, `the`) reaches nothing: answers drop leading articles.
- The generated text says how the generated first token went on: when the text names one class
  (`AnswerMapper`, as closed-set reads it), the generated token counts for that class alone (`A`
  of "A dog" counts for dog; `tennis` of "tennis ball" for tennis ball, not tennis racket). Every
  other listed token counts for every class it reaches.
- A class's log-probability is the log-sum-exp of the tokens that count for it; a class no token
  counts for has none (−inf). The highest wins; highest classes tied (they share their counting
  tokens, and the text named none of them) leave the image invalid, never guessed, as does a
  response in which no token counts for any class.
- `scores` are the probabilities renormalised over the classes with mass (uniform when none has).

The question's detail keeps the order, the generated first token and the listed tokens with their
log-probabilities; the answer is the generated text, so the prediction is recomputed from the store.
A server that sends no log-probabilities (`transformers serve`) stops the run at the first answer,
which is asked alone, with what to use instead (`models/logprobs.py`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from classbench.answers import AnswerMapper, normalise
from classbench.errors import UserError
from classbench.models.base import Backend, GenerationRequest
from classbench.models.logprobs import require_first_token_logprobs
from classbench.records import Question
from classbench.strategies import closed_set
from classbench.strategies.asking import failed_step, fill, question, seeded_order
from classbench.strategies.base import Context, Item, Step, Strategy
from classbench.strategies.likelihood import FIRST_TOKEN, KEY, LikelihoodSettings

MAX_TOP_LOGPROBS = 20
"""The most alternatives per token the OpenAI API returns."""
ARTICLES = frozenset({"a", "an", "the"})


class FirstTokenLikelihood(Strategy[LikelihoodSettings]):
    name = "likelihood"
    needs = "first_token_logprobs"

    def __init__(self, model: Backend, settings: LikelihoodSettings, context: Context) -> None:
        super().__init__(model, settings, context)
        if settings.calibrate or settings.score_norm != "sum":
            raise UserError(f"--calibrate and --score-norm mean need a model that scores whole class names "
                            f"(--model hf:…); {model.model_id} is scored on its first answer token only")
        self.template = settings.prompt or closed_set.DEFAULT_PROMPT
        self.top_logprobs = settings.top_logprobs or MAX_TOP_LOGPROBS
        self.mapper = AnswerMapper(context.classes)
        self.compact = [normalise(name).replace(" ", "") for name in context.classes]
        self.checked = False
        """Whether an answer has shown that the server sends log-probabilities."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "scoring": FIRST_TOKEN, "prompt": self.template,
                "order": "seeded per image, as closed-set shuffle 0", "top_logprobs": self.top_logprobs,
                "max_new_tokens": self.settings.max_new_tokens}

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        pending = []
        for item in items:
            if KEY in item.done:
                yield self.step_for(item, item.done[KEY], fresh=False)
            else:
                order = seeded_order(self.context.classes, self.context.seed, item.image_id, "closed-set", 0)
                pending.append((item, order, fill(self.template, "{classes}", ", ".join(order))))
        while pending:
            # Until an answer has shown log-probabilities, ask one question alone: a server that
            # sends none is refused after one request, not a batch.
            size = self.context.batch_size if self.checked else 1
            call, pending = pending[:size], pending[size:]
            requests = [GenerationRequest(item.image, prompt, self.settings.max_new_tokens, self.top_logprobs)
                        for item, _, prompt in call]
            generations = self.model.generate(requests)
            if len(generations) != len(requests):
                raise RuntimeError(f"{self.model.model_id} answered {len(generations)} of {len(requests)} requests")
            for (item, order, prompt), generation in zip(call, generations):
                if generation.error is not None:
                    yield failed_step(item, [question(KEY, prompt, generation)], generation.error)
                    continue
                logprobs = require_first_token_logprobs(generation, self.model.model_id, self.name)
                self.checked = True
                detail = {"order": order, "first_token": generation.first_token,
                          "top_logprobs": {token: round(value, 6) for token, value in logprobs.items()}}
                yield self.step_for(item, question(KEY, prompt, generation, None, detail), fresh=True)

    def step_for(self, item: Item, asked: Question, fresh: bool) -> Step:
        """The prediction from a stored or fresh question (rules in the module docstring)."""
        detail = asked.detail or {}
        named = self.mapper.map(asked.answer or "").label
        logprob = self.class_logprobs(detail["top_logprobs"], detail.get("first_token"), named)
        reached = np.isfinite(logprob)
        if not reached.any():
            probabilities = np.full(len(logprob), 1.0 / len(logprob))
            best: list[int] = []
        else:
            top = logprob[reached].max()
            probabilities = np.where(reached, np.exp(np.where(reached, logprob, top) - top), 0.0)
            probabilities /= probabilities.sum()
            best = [int(i) for i in np.flatnonzero(logprob == top)]
        prediction = self.context.classes[best[0]] if len(best) == 1 else None
        summary: dict[str, Any] = {"scores": [round(float(p), 6) for p in probabilities]}
        if prediction is None:
            summary["outcome"] = "tie" if best else "no class reached"
            if best:
                summary["tied"] = [self.context.classes[i] for i in best]
        questions = [replace(asked, label=prediction)] if fresh else []
        return Step(item=item, questions=questions, prediction=prediction, final=True, detail=summary)

    def class_logprobs(self, logprobs: dict[str, float], first_token: str | None, named: str | None) -> np.ndarray:
        """Each class's log-probability from the listed first tokens (rules in the module docstring)."""
        total = np.full(len(self.context.classes), -np.inf)
        for token, logprob in logprobs.items():
            if named is not None and token == first_token:
                counts = [self.context.classes.index(named)]
            else:
                counts = self.reached(token)
            for i in counts:
                total[i] = np.logaddexp(total[i], logprob)
        return total

    def reached(self, token: str) -> list[int]:
        text = normalise(token)
        if not text or text in ARTICLES:
            return []
        start = text.replace(" ", "")
        return [i for i, name in enumerate(self.compact) if name.startswith(start)]
