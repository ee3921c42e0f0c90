"""The `likelihood` strategy: score every class name as the answer, pick the most likely.

Free-text answers waste what a VLM knows (an answer that names no class is simply wrong); scoring
each class name's log-probability given the image reads the model's preference among exactly the
classes. Per image, the image and prompt run once and all names are scored over that shared cache
(`models/hf_prefix.py`, which also defines a name's tokens: the name as the whole answer, end of
answer included). One question per image, key `score`; its detail keeps each class's summed
log-probability and token count, so the prediction can be recomputed from the store.

Score per class (`--score-norm`):
- `sum` (default): the summed log-probability, i.e. log P(the answer is exactly this name). The
  softmax of these over the classes is the model's distribution given that it answers with one of
  them, so probabilities, top-k and calibration mean what they say.
- `mean`: the sum divided by the name's token count. It stops long names from being penalised for
  their length, at the price of favouring names whose later tokens are near-certain.

`--calibrate` subtracts, class by class, the same score given a mid-grey image instead of the
photo: the model's prior for each name under this prompt (Zhao et al., 2021, "content-free input").
A grey image, not a text-only prompt, because every architecture accepts one through the very same
path (PaliGemma has no prompt without an image; for chat templates, dropping the image changes the
template). It is image-independent, so it is computed once per run and recorded in the strategy's
provenance.

The stored per-class probabilities (`scores`, the softmax of the chosen score) feed top-5 accuracy
and the expected calibration error in metrics.json. Ties go to the class listed first.

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

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from classbench.answers import AnswerMapper, normalise
from classbench.errors import UserError
from classbench.models.base import Backend, GenerationRequest, ScoreRequest, Scores
from classbench.models.logprobs import require_first_token_logprobs
from classbench.store import Question, Store
from classbench.strategies import closed_set
from classbench.strategies.asking import failed_step, fill, question, seeded_order
from classbench.strategies.base import Context, Item, Step, Strategy

DEFAULT_PROMPT = "Question: What type of object is in this photo? Answer:"
KEY = "score"
BLANK_SIZE = (224, 224)
BLANK_COLOUR = (128, 128, 128)
TOP_ANSWERS = 5
MAX_TOP_LOGPROBS = 20
"""The most alternatives per token the OpenAI API returns."""
ARTICLES = frozenset({"a", "an", "the"})
FIRST_TOKEN = "first answer token"


class Likelihood(Strategy):
    name = "likelihood"
    settings = frozenset({"prompt", "score_norm", "calibrate", "max_new_tokens"})
    needs = ("score", "first_token_logprobs")

    def __init__(self, model: Backend, context: Context) -> None:
        super().__init__(model, context)
        self.by_first_token = "score" not in model.capabilities
        if self.by_first_token:
            self._init_first_token(model, context)
            return
        template = context.prompt or DEFAULT_PROMPT
        self.prompt = fill(template, "{classes}", ", ".join(context.classes))
        self.norm = context.score_norm
        self.blank: Scores | None = None
        if context.calibrate:
            blank = Image.new("RGB", BLANK_SIZE, BLANK_COLOUR)
            self.blank = model.score([ScoreRequest(blank, self.prompt, tuple(context.classes))])[0]

    def _init_first_token(self, model: Backend, context: Context) -> None:
        if context.calibrate or context.score_norm != "sum":
            raise UserError(f"--calibrate and --score-norm mean need a model that scores whole class names "
                            f"(--model hf:…); {model.model_id} is scored on its first answer token only")
        self.template = context.prompt or closed_set.DEFAULT_PROMPT
        self.top_logprobs = int(context.options.get("top_logprobs") or MAX_TOP_LOGPROBS)
        self.mapper = AnswerMapper(context.classes)
        self.compact = [normalise(name).replace(" ", "") for name in context.classes]
        self.checked = False
        """Whether an answer has shown that the server sends log-probabilities."""

    def describe(self) -> dict[str, Any]:
        if self.by_first_token:
            return {"name": self.name, "scoring": FIRST_TOKEN, "prompt": self.template,
                    "order": "seeded per image, as closed-set shuffle 0", "top_logprobs": self.top_logprobs,
                    "max_new_tokens": self.context.max_new_tokens}
        described: dict[str, Any] = {"name": self.name, "prompt": self.prompt, "score_norm": self.norm,
                                     "calibrate": self.blank is not None}
        if self.blank is not None:
            described["calibration"] = {"image": f"mid-grey {BLANK_SIZE[0]}x{BLANK_SIZE[1]}",
                                        "logprob": [round(float(v), 6) for v in self.blank.logprob]}
        return described

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        if self.by_first_token:
            yield from self._run_first_token(items)
            return
        asked = [item for item in items if KEY not in item.done]
        requests = [ScoreRequest(item.image, self.prompt, tuple(self.context.classes)) for item in asked]
        fresh = dict(zip((id(item) for item in asked), self.model.score(requests))) if requests else {}
        for item in items:
            scores = fresh.get(id(item))
            new = [] if scores is None else [self._question(scores)]
            stored = new[0] if new else item.done[KEY]
            probabilities = self.probabilities(np.asarray(stored.detail["logprob"]),
                                               np.asarray(stored.detail["tokens"]))
            prediction = self.context.classes[int(np.argmax(probabilities))]
            yield Step(item=item, questions=new, prediction=prediction, final=True,
                       detail={"scores": [round(float(p), 6) for p in probabilities]})

    def probabilities(self, logprob: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """The softmax over classes of the chosen score (module docstring)."""
        score = logprob - (self.blank.logprob if self.blank is not None else 0.0)
        if self.norm == "mean":
            score = score / tokens
        shifted = np.exp(score - score.max())
        return shifted / shifted.sum()

    def _question(self, scores: Scores) -> Question:
        probabilities = self.probabilities(scores.logprob, scores.tokens)
        top = np.argsort(-probabilities, kind="stable")[:TOP_ANSWERS]
        answer = json.dumps({self.context.classes[i]: round(float(probabilities[i]), 5) for i in top})
        detail = {"logprob": [round(float(v), 6) for v in scores.logprob], "tokens": [int(n) for n in scores.tokens]}
        return Question(key=KEY, prompt=self.prompt, answer=answer, label=self.context.classes[int(top[0])],
                        latency_s=scores.latency_s, tokens_in=scores.tokens_in, detail=detail)

    def _run_first_token(self, items: Sequence[Item]) -> Iterator[Step]:
        pending = []
        for item in items:
            if KEY in item.done:
                yield self._first_token_step(item, item.done[KEY], fresh=False)
            else:
                order = seeded_order(self.context.classes, self.context.seed, item.image_id, "closed-set", 0)
                pending.append((item, order, fill(self.template, "{classes}", ", ".join(order))))
        while pending:
            # Until an answer has shown log-probabilities, ask one question alone: a server that
            # sends none is refused after one request, not a batch.
            size = self.context.batch_size if self.checked else 1
            call, pending = pending[:size], pending[size:]
            requests = [GenerationRequest(item.image, prompt, self.context.max_new_tokens, self.top_logprobs)
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
                yield self._first_token_step(item, question(KEY, prompt, generation, None, detail), fresh=True)

    def _first_token_step(self, item: Item, asked: Question, fresh: bool) -> Step:
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

    @classmethod
    def summarise(cls, store: Store) -> dict[str, Any] | None:
        """How sure the model was: mean top-class probability and expected calibration error."""
        from classbench.metrics import expected_calibration_error

        classes = store.meta("classes") or []
        scored = [p for p in store.predictions() if p.status != "failed" and p.detail and "scores" in p.detail]
        if not scored:
            return None
        index = {name: i for i, name in enumerate(classes)}
        confidence = [max(p.detail["scores"]) for p in scored]
        strategy = store.meta("strategy") or {}
        summary = {"score_norm": strategy.get("score_norm"), "calibrate": strategy.get("calibrate"),
                   "mean_confidence": float(np.mean(confidence)),
                   "ece": expected_calibration_error(scored, index)}
        if strategy.get("scoring") == FIRST_TOKEN:
            outcomes = [p.detail.get("outcome") for p in scored]
            summary.update(scoring=FIRST_TOKEN, top_logprobs=strategy.get("top_logprobs"),
                           ties=outcomes.count("tie"), no_class_reached=outcomes.count("no class reached"))
        return summary

    @staticmethod
    def summary_line(summary: dict[str, Any]) -> str:
        if summary.get("scoring") == FIRST_TOKEN:
            return (f"likelihood: classes scored on the {FIRST_TOKEN} (top {summary['top_logprobs']}); "
                    f"{summary['ties']} tied and {summary['no_class_reached']} reaching no class (invalid); "
                    f"mean top-class probability {summary['mean_confidence']:.3f}, "
                    f"expected calibration error {summary['ece']:.3f}")
        calibrated = ", calibrated on a grey image" if summary["calibrate"] else ""
        return (f"likelihood: {summary['score_norm']} log-probability per class{calibrated}; mean top-class "
                f"probability {summary['mean_confidence']:.3f}, expected calibration error {summary['ece']:.3f}")
