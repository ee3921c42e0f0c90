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

Over an API (a backend with `first_token_logprobs` but no `score`: `openai:` models) the classes are
scored on the first answer token instead: `likelihood_api.FirstTokenLikelihood`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image

from pydantic import Field

from classbench.calibration import expected_calibration_error
from classbench.models.base import Backend, ScoreRequest, Scores
from classbench.records import Question, RunRecords
from classbench.settings import Settings, option_only
from classbench.strategies.asking import fill
from classbench.strategies.base import Context, Item, Step, Strategy

DEFAULT_PROMPT = "Question: What type of object is in this photo? Answer:"
KEY = "score"
BLANK_SIZE = (224, 224)
BLANK_COLOUR = (128, 128, 128)
TOP_ANSWERS = 5
FIRST_TOKEN = "first answer token"
"""How `likelihood_api` describes its scoring, which the summary reports."""


class LikelihoodSettings(Settings):
    prompt: str | None = Field(default=None, description="prompt template ({classes} optional) [default: the "
                                                         "published prompt; over an API, closed-set's]")
    score_norm: Literal["sum", "mean"] = Field(default="sum", description="a class's score is its name's summed "
                                               "log-probability as the answer (sum) or the mean per token (mean)")
    calibrate: bool = Field(default=False, description="subtract each class's score given a blank mid-grey image "
                                                      "(the prompt's prior for each name)")
    max_new_tokens: int = Field(default=10, ge=1, description="longest answer, in tokens")
    top_logprobs: int | None = option_only(None, "over an API: likely first tokens to ask for, 1–20 [default: 20]",
                                           ge=1, le=20)


class Likelihood(Strategy[LikelihoodSettings]):
    name = "likelihood"
    needs = "score"

    def __init__(self, model: Backend, settings: LikelihoodSettings, context: Context) -> None:
        super().__init__(model, settings, context)
        template = settings.prompt or DEFAULT_PROMPT
        self.prompt = fill(template, "{classes}", ", ".join(context.classes))
        self.norm = settings.score_norm
        self.blank: Scores | None = None
        if settings.calibrate:
            blank = Image.new("RGB", BLANK_SIZE, BLANK_COLOUR)
            self.blank = model.score([ScoreRequest(blank, self.prompt, tuple(context.classes))])[0]

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"name": self.name, "prompt": self.prompt, "score_norm": self.norm,
                                     "calibrate": self.blank is not None}
        if self.blank is not None:
            described["calibration"] = {"image": f"mid-grey {BLANK_SIZE[0]}x{BLANK_SIZE[1]}",
                                        "logprob": [round(float(v), 6) for v in self.blank.logprob]}
        return described

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
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


def summarise(run: RunRecords) -> dict[str, Any] | None:
    """How sure the model was: mean top-class probability and expected calibration error."""
    classes = run.classes
    scored = [p for p in run.predictions if p.status != "failed" and p.detail and "scores" in p.detail]
    if not scored:
        return None
    index = {name: i for i, name in enumerate(classes)}
    confidence = [max(p.detail["scores"]) for p in scored]
    strategy = run.strategy
    summary = {"score_norm": strategy.get("score_norm"), "calibrate": strategy.get("calibrate"),
               "mean_confidence": float(np.mean(confidence)),
               "ece": expected_calibration_error(scored, index)}
    if strategy.get("scoring") == FIRST_TOKEN:
        outcomes = [p.detail.get("outcome") for p in scored]
        summary.update(scoring=FIRST_TOKEN, top_logprobs=strategy.get("top_logprobs"),
                       ties=outcomes.count("tie"), no_class_reached=outcomes.count("no class reached"))
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    if summary.get("scoring") == FIRST_TOKEN:
        return (f"likelihood: classes scored on the {FIRST_TOKEN} (top {summary['top_logprobs']}); "
                f"{summary['ties']} tied and {summary['no_class_reached']} reaching no class (invalid); "
                f"mean top-class probability {summary['mean_confidence']:.3f}, "
                f"expected calibration error {summary['ece']:.3f}")
    calibrated = ", calibrated on a grey image" if summary["calibrate"] else ""
    return (f"likelihood: {summary['score_norm']} log-probability per class{calibrated}; mean top-class "
            f"probability {summary['mean_confidence']:.3f}, expected calibration error {summary['ece']:.3f}")
