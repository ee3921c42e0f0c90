"""Greedy decoding for remote-code families, written once and used by all three.

The families' own entry points do not decode greedily (MiniCPM-V's `chat(sampling=False)` is beam
search, `num_beams=3`, with `repetition_penalty=1.2`) or no longer run on transformers 5's
`generate` (InternLM2 has no `GenerationMixin` and expects tuple caches). classbench therefore
runs the model's own forward pass in a plain loop: the highest-scoring token each step, one beam,
no penalty, no sampling, stopping at the family's end-of-turn tokens. The KV cache is whatever the
model's forward returns (tuples for InternLM2, a `DynamicCache` for the others) fed back unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

Forward = Callable[[list[int], Any], tuple[torch.Tensor, Any]]
"""(tokens generated so far, cache or None) → (next-token logits, cache). With no cache, the whole
prompt plus the generated tokens run from scratch; with one, only the last generated token."""


def greedy(forward: Forward, max_new_tokens: int, stops: Iterable[int], use_cache: bool = True) -> list[int]:
    """The generated token ids, without the stop token. `use_cache=False` runs a full forward per
    token (the reference a test compares the cached loop with)."""
    stops = set(stops)
    generated: list[int] = []
    if max_new_tokens <= 0:
        return generated
    with torch.inference_mode():
        logits, cache = forward(generated, None)
        while True:
            token = int(torch.argmax(logits.float()))
            if token in stops:
                break
            generated.append(token)
            if len(generated) >= max_new_tokens:
                break
            logits, cache = forward(generated, cache if use_cache else None)
    return generated


def stop_ids(tokenizer: Any, generation_config: Any, tokens: Iterable[str]) -> set[int]:
    """The end-of-sequence ids of the generation config and tokenizer, plus the family's end-of-turn
    tokens that the vocabulary has."""
    ids: set[int] = set()
    for value in (getattr(generation_config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    vocabulary = tokenizer.get_vocab()
    ids.update(vocabulary[token] for token in tokens if token in vocabulary)
    return ids


def last_logits(output: Any) -> torch.Tensor:
    return output.logits[0, -1]


def cache_of(output: Any) -> Any:
    """The returned KV cache: `cache` on transformers 5 outputs, `past_key_values` on tuples."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output["past_key_values"] if "past_key_values" in output else None


def answer_each(backend: Any, requests: Sequence[Any], forward_for: Callable[[Any, Any, str], Forward],
                stops: Callable[[Any], set[int]]) -> list[str]:
    """A family's answers, one request at a time: its forward for the (bounded) image and prompt,
    decoded greedily until one of its stop tokens (read once: `stop_ids` walks the whole vocabulary)."""
    answers = []
    stop_tokens = stops(backend)
    for request in requests:
        forward = forward_for(backend, backend.bounded(request.image), request.prompt)
        tokens = greedy(forward, request.max_new_tokens, stop_tokens)
        answers.append(backend.tokenizer.decode(tokens, skip_special_tokens=True))
    return answers
