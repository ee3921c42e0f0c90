"""The reference for shared-prefix scoring: one full forward (image included) per candidate.

Not a production path: tests compare `hf_prefix.score` with it (equal log-probabilities, same
argmax, on every tiny architecture) and `bench/strategies.py` uses it as the baseline that
shared-prefix scoring is measured against. It builds each candidate's input the way generation
would have produced it: the prompt's ids followed by the answer's, with every per-token input the
processor returned extended over the answer.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import numpy as np
import torch

from classbench.models.base import ScoreRequest, Scores
from classbench.models.hf_prefix import answer_ids, model_inputs

APPENDED_VALUE = {"attention_mask": 1, "token_type_ids": 1, "mm_token_type_ids": 0}
"""What a generated token gets in each per-token input: attended; PaliGemma's causal suffix (1);
Qwen's text modality (0)."""


@torch.inference_mode()
def score_full_forward(backend: Any, request: ScoreRequest) -> Scores:
    started = perf_counter()
    inputs = model_inputs(backend, [request.image], [request.prompt])
    prompt_ids = inputs["input_ids"][0].tolist()
    length = len(prompt_ids)
    stops = torch.tensor(sorted(backend.stop_ids()), device=backend.device)
    answers = [answer_ids(backend.tokenizer, name, prompt_ids) for name in request.candidates]
    logprob = np.zeros(len(answers))
    for index, ids in enumerate(answers):
        joined = dict(inputs)
        for key, value in inputs.items():
            if key == "input_ids":
                joined[key] = torch.cat([value, torch.tensor([ids], device=value.device)], dim=1)
            elif torch.is_tensor(value) and value.dim() == 2 and value.shape[1] == length:
                joined[key] = torch.cat([value, value.new_full((1, len(ids)), APPENDED_VALUE[key])], dim=1)
            elif torch.is_tensor(value) and value.dim() > 2 and value.shape[1] == length:
                # mllama's cross-attention mask (token × image × tile): an answer token sees what the last prompt token saw.
                joined[key] = torch.cat([value, value[:, -1:].expand(-1, len(ids), *value.shape[2:])], dim=1)
        logits = torch.log_softmax(backend.model(**joined).logits[0, length - 1:].float(), dim=-1)
        positions = torch.arange(len(ids), device=backend.device)
        total = logits[positions, torch.tensor(ids, device=backend.device)].sum()
        logprob[index] = float(total + torch.logsumexp(logits[len(ids), stops], dim=0))
    return Scores(logprob=logprob, tokens=np.array([len(ids) + 1 for ids in answers]), tokens_in=length,
                  latency_s=perf_counter() - started)
