"""The first answer token's log-probabilities, for strategies that score rather than read answers.

A generator fills `Generation.first_token_logprobs` where it can (the OpenAI API and vLLM return
`top_logprobs`; `transformers serve` and Ollama ignore the request). A strategy that needs them
calls `require_first_token_logprobs`, which turns "the server sent none" into a message that says
which servers do and what to run instead, rather than a silent fallback to guessing.
"""

from __future__ import annotations

from classbench.errors import UserError
from classbench.models.base import Generation


def require_first_token_logprobs(generation: Generation, model_id: str, strategy: str) -> dict[str, float]:
    if generation.first_token_logprobs:
        return generation.first_token_logprobs
    raise UserError(
        f"--strategy {strategy} needs the first answer token's log-probabilities, but {model_id} returned none. "
        "The OpenAI API and vLLM return them when asked (for openai: models, --option top_logprobs=5); "
        "transformers serve and Ollama do not. Use --strategy closed-set with this server."
    )
