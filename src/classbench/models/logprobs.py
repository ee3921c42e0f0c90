"""The first answer token's log-probabilities, for strategies that score rather than read answers.

A generator with the `first_token_logprobs` capability asks for them (`GenerationRequest.top_logprobs`)
and fills `Generation.first_token_logprobs` when the server sends them: the OpenAI API and vLLM do,
`transformers serve` ignores the request. Whether a server does is only known from its answers, so
a strategy that needs them calls `require_first_token_logprobs` on its first answer, which turns
"the server sent none" into a message that says which servers do and what to run instead, rather
than a silent fallback to guessing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from classbench.answers import parse_yes_no
from classbench.errors import UserError
from classbench.models.base import Generation


def require_first_token_logprobs(generation: Generation, model_id: str, strategy: str) -> dict[str, float]:
    if generation.first_token_logprobs:
        return generation.first_token_logprobs
    raise UserError(
        f"--strategy {strategy} needs the first answer token's log-probabilities (top_logprobs), but {model_id} "
        "returned none although classbench asked for them. The OpenAI API and vLLM send them; transformers serve "
        "ignores the request. With this server use --strategy closed-set or --strategy binary, or run the model "
        "yourself with --model hf:NAME, which scores every class name in full."
    )


def yes_probability(logprobs: Mapping[str, float]) -> float | None:
    """P(yes | the answer starts with yes or no): the listed first tokens that read as yes
    (`parse_yes_no` on the token without its spaces) against those that read as yes or no; None
    when no listed token reads as either."""
    yes = no = 0.0
    for token, logprob in logprobs.items():
        reply = parse_yes_no(token.strip())
        if reply is True:
            yes += math.exp(logprob)
        elif reply is False:
            no += math.exp(logprob)
    return yes / (yes + no) if yes + no > 0 else None
