"""Shared-prefix computation for the transformers backend: run the image and prompt once, reuse its
key/value cache for many continuations.

Two jobs use it. `score` runs image + prompt once and scores every candidate answer in batched
forwards over copies of that cache, instead of one full forward (vision tower included) per
candidate. `generate_shared` answers several questions about one image whose prompts differ only
after a common start (binary's "is the {class} in this photo?"): the image and the common start are
run once (all images of a batch in one prefill), and `model.generate` continues every (image,
question) row from a copy of its image's cache, with the model's own generation settings, so the
answers are those of `generate`.

What a candidate's answer is, token by token: the class name right after the rendered prompt (the
chat template with its generation prompt), then the end of the answer. The name is tokenised on
its own and appended to the prompt's ids (`" cat"` and `"cat"` are different tokens, and joint
tokenisation could merge across the boundary). It gets a leading space when the prompt's last
token does not end in whitespace (`ASSISTANT:`, `Assistant:`), and none after a newline (Qwen's
`assistant\\n`, PaliGemma's `\\n`, Llama 3's `\\n\\n`); tokenisers that mark word starts
themselves (SentencePiece's `▁`) get the bare name. The end of the answer is any of the tokens
that stop `generate` (the generation config's eos and pad ids), so its log-probability is the
log of their summed probabilities: a name is scored as the *whole* answer, and `cat` does not win
for free over `cat food`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from classbench.models.base import Generation, GenerationRequest, ScoreRequest, Scores

if TYPE_CHECKING:
    from classbench.models.hf_backend import HFVisionLanguageModel as PrefixHost
    """What this module uses of the backend: `model`, `device`, `adapter`, `tokenizer`, `processor`,
    `prepare`, `generate`, `text_ids`, `answer_ids`, `stop_ids`, `position_state`, `set_position_state`."""

CACHED_TOKENS = 65_536
"""Continuation rows × prefix tokens per batched call: bounds the memory of the repeated cache (a
7B model's 1,000-token image prompt allows 64 rows at once; a tiny test model's, thousands)."""
WORD_START = "▁"
WAVE_ROWS = 64
"""The fewest (image, question) rows a wave of `generate_shared` with a stop test asks for."""
TOKEN_MASKS = ("cross_attention_mask",)
"""Per-token inputs with more than two dimensions: which image tiles each token attends to (mllama's
cross-attention). A token after the prompt sees what the prompt's last token saw; without the mask it
would also attend to the padding tiles of an image that fills fewer than the most tiles."""


def score(backend: PrefixHost, request: ScoreRequest) -> Scores:
    started = perf_counter()
    inputs = model_inputs(backend, [request.image], [request.prompt])
    prompt_ids = inputs["input_ids"][0].tolist()
    answers = [backend.answer_ids(name, prompt_ids) for name in request.candidates]
    stops = torch.tensor(sorted(backend.stop_ids()), device=backend.device)
    output = backend.model(**inputs, use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(output.logits[0, -1].float(), dim=-1)
    logprob = np.zeros(len(answers))
    step = rows_per_call(len(prompt_ids))
    for start in range(0, len(answers), step):
        rows = answers[start:start + step]
        width = max(len(ids) for ids in rows)
        # Right padding needs no mask: under causal attention no real position sees the pads after it.
        batch = torch.tensor([ids + [ids[-1]] * (width - len(ids)) for ids in rows], device=backend.device)
        masks = {key: inputs[key][:, -1:].expand(len(rows), width, *inputs[key].shape[2:])
                 for key in TOKEN_MASKS if key in inputs}
        logits = backend.model(input_ids=batch, cache=repeated(output.cache, len(rows)), use_cache=True,
                               **masks).logits
        logits = torch.log_softmax(logits.float(), dim=-1)
        # Position j predicts token j+1 of the name; the name's last position predicts the end of the answer.
        following = torch.tensor([ids[1:] + [0] * (width - len(ids) + 1) for ids in rows], device=backend.device)
        inside = torch.tensor([[1.0] * (len(ids) - 1) + [0.0] * (width - len(ids) + 1) for ids in rows],
                              device=backend.device)
        last = torch.tensor([len(ids) - 1 for ids in rows], device=backend.device)
        heads = torch.tensor([ids[0] for ids in rows], device=backend.device)
        within = (logits.gather(-1, following.unsqueeze(-1)).squeeze(-1) * inside).sum(dim=1)
        ending = torch.logsumexp(logits[torch.arange(len(rows), device=backend.device), last][:, stops], dim=-1)
        logprob[start:start + len(rows)] = (first[heads] + within + ending).cpu().numpy()
    return Scores(logprob=logprob, tokens=np.array([len(ids) + 1 for ids in answers]), tokens_in=len(prompt_ids),
                  latency_s=perf_counter() - started)


def generate_shared(backend: PrefixHost, asks: Sequence[tuple[Image.Image, Sequence[str]]], max_new_tokens: int,
                    stop: Callable[[Generation], bool] | None = None) -> list[list[Generation]]:
    """Answer each image's prompts; falls back to plain batched `generate` calls where no prefix can be
    shared (a prefix-LM such as PaliGemma, or a processor whose ids do not end with the prompt's text).

    With `stop`, an image's answers end at the first one that `stop` accepts: its prompts are asked in
    waves along their order (`wave_size`), an image leaves the waves once it has stopped, and what was
    computed past its stop in its last wave is dropped. Each answer's `latency_s` is an equal share of
    the call's time over the answers returned."""
    started = perf_counter()
    prompts = [list(asked) for _, asked in asks]
    plan = (_plan(backend, asks) if backend.adapter.shared_prefix and sum(map(len, prompts)) > len(asks)
            else None)
    prefix = _Prefix(backend, *plan) if plan is not None else None
    answers: list[list[Generation]] = [[] for _ in asks]
    waiting = [i for i, asked in enumerate(prompts) if asked]
    while waiting:
        left = max(len(prompts[i]) - len(answers[i]) for i in waiting)
        size = wave_size(left, len(waiting)) if stop is not None else left
        rows = [(i, prompt) for i in waiting for prompt in prompts[i][len(answers[i]):len(answers[i]) + size]]
        if prefix is not None:
            generated = prefix.generate(rows, max_new_tokens)
        else:
            requests = [GenerationRequest(asks[i][0], prompt, max_new_tokens) for i, prompt in rows]
            generated = [g for start in range(0, len(requests), len(asks))
                         for g in backend.generate(requests[start:start + len(asks)])]
        stopped: set[int] = set()
        for (i, _), generation in zip(rows, generated):
            if i not in stopped:
                answers[i].append(generation)
                if stop is not None and stop(generation):
                    stopped.add(i)
        waiting = [i for i in waiting if i not in stopped and len(answers[i]) < len(prompts[i])]
    latency = (perf_counter() - started) / max(1, sum(map(len, answers)))
    return [[replace(answer, latency_s=latency) for answer in image] for image in answers]


def wave_size(left: int, images: int) -> int:
    """Questions per image in the next wave, given the most that any of the `images` still waiting has
    `left`: half of that, so an image's questions past its stop cost at most half what remained, but
    enough for WAVE_ROWS rows, as a call's own cost (setup, a forward per new token) is that of tens of
    rows on the CPU."""
    return max(-(-left // 2), -(-WAVE_ROWS // images))


def model_inputs(backend: PrefixHost, images: Sequence[Image.Image], prompts: Sequence[str]) -> Any:
    inputs = backend.prepare(images, prompts)
    inputs.pop("labels", None)  # PaliGemma's processor adds them; the forward would compute a loss
    return inputs


def answer_ids(tokenizer: Any, name: str, prompt_ids: Sequence[int]) -> list[int]:
    """The tokens of `name` as the answer right after the prompt (rule in the module docstring)."""
    bare = tokenizer.encode(name, add_special_tokens=False)
    last = tokenizer.decode(list(prompt_ids[-1:]))
    if not last or last[-1].isspace():
        return bare
    if bare and tokenizer.convert_ids_to_tokens(bare[:1])[0].startswith(WORD_START):
        return bare
    return tokenizer.encode(" " + name, add_special_tokens=False)


def rows_per_call(prefix_length: int) -> int:
    return max(1, CACHED_TOKENS // max(1, prefix_length))


def repeated(cache: Any, times: int) -> Any:
    """A copy of a batch-1 cache, repeated `times` in the batch dimension (the original stays usable)."""
    duplicate = copy.deepcopy(cache)
    duplicate.batch_repeat_interleave(times)
    return duplicate


def _plan(backend: PrefixHost,
          asks: Sequence[tuple[Image.Image, Sequence[str]]]) -> tuple[Any, int, dict[str, list[int]]] | None:
    """The images' model inputs (every image with the same prompt), the length of the prefix all prompts
    share, and each prompt's remaining tokens; None when the processor's ids do not end with the
    text-only remainder (the image expansion or special tokens would reach into the part that differs)."""
    prompts = list(dict.fromkeys(prompt for _, asked in asks for prompt in asked))
    tokens = {prompt: backend.text_ids(prompt) for prompt in prompts}
    common, shortest = 0, min(len(ids) for ids in tokens.values())
    while common < shortest - 1 and len({ids[common] for ids in tokens.values()}) == 1:
        common += 1
    inputs = model_inputs(backend, [image for image, _ in asks], [prompts[0]] * len(asks))
    suffix = tokens[prompts[0]][common:]
    ids = inputs["input_ids"]
    if ids.shape[1] <= len(suffix) or any(row[-len(suffix):] != suffix for row in ids.tolist()):
        return None
    return inputs, ids.shape[1] - len(suffix), {prompt: ids[common:] for prompt, ids in tokens.items()}


class _Prefix:
    """Every image's prefix, prefilled in one batch; `generate` continues (image, prompt) rows from copies
    of their image's cache. Prompts are left-padded between prefix and remainder; `generate` derives
    positions from the attention mask, so the pads shift nothing. The prefill is a plain forward when
    no prefix is padded (default positions are then right) and a one-token `generate` otherwise."""

    def __init__(self, backend: PrefixHost, inputs: Any, prefix_length: int, suffixes: dict[str, list[int]]) -> None:
        model = backend.model
        length = inputs["input_ids"].shape[1]
        self.per_token = {key for key, value in inputs.items()
                          if torch.is_tensor(value) and (value.dim() == 2 or key in TOKEN_MASKS)
                          and value.shape[1] == length}
        self.prefix = {key: value[:, :prefix_length] if key in self.per_token else value
                       for key, value in inputs.items()}
        if bool(self.prefix["attention_mask"].all()):
            self.cache = model(**self.prefix, use_cache=True, logits_to_keep=1).cache
        else:
            self.cache = model.generate(**self.prefix, max_new_tokens=1, do_sample=False, num_beams=1,
                                        return_dict_in_generate=True).cache
        self.deltas = backend.position_state(inputs["input_ids"].shape[0])
        self.backend, self.inputs, self.suffixes = backend, inputs, suffixes
        self.step = rows_per_call(prefix_length)
        self.stops = backend.stop_ids()

    def generate(self, rows: Sequence[tuple[int, str]], max_new_tokens: int) -> list[Generation]:
        return [answer for start in range(0, len(rows), self.step)
                for answer in self._generate(rows[start:start + self.step], max_new_tokens)]

    def _generate(self, rows: Sequence[tuple[int, str]], max_new_tokens: int) -> list[Generation]:
        backend, prefix = self.backend, self.prefix
        pad = backend.tokenizer.pad_token_id or 0
        index = torch.tensor([image for image, _ in rows], device=backend.device)
        tails = [self.suffixes[prompt] for _, prompt in rows]
        width = max(map(len, tails))
        tail_ids = torch.tensor([[pad] * (width - len(t)) + t for t in tails], device=backend.device)
        tail_mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails], device=backend.device)
        mask = prefix["attention_mask"]
        continued = {"input_ids": torch.cat([prefix["input_ids"][index], tail_ids], dim=1),
                     "attention_mask": torch.cat([mask[index], tail_mask.to(mask.dtype)], dim=1)}
        for key in self.per_token - continued.keys():
            # Per-token inputs such as Qwen's `mm_token_type_ids`: the remainder is text, like the prompt's end.
            last = self.inputs[key][index, -1:]
            continued[key] = torch.cat([prefix[key][index], last.expand(-1, width, *last.shape[2:])], dim=1)
        cache = copy.deepcopy(self.cache)
        cache.batch_select_indices(index)
        if self.deltas is not None:
            backend.set_position_state(self.deltas[index])
        generated = backend.model.generate(**continued, cache=cache, max_new_tokens=max_new_tokens,
                                           do_sample=False, num_beams=1, repetition_penalty=1.0)
        answers = [self._until_stop(row[:max_new_tokens])
                   for row in generated[:, continued["input_ids"].shape[1]:].tolist()]
        distinct = list(dict.fromkeys(answers))  # mostly the same few answers: decode each once
        texts = dict(zip(distinct, backend.processor.batch_decode([list(ids) for ids in distinct],
                                                                  skip_special_tokens=True)))
        return [Generation(text=texts[answer].strip(), tokens_in=int(tokens), tokens_out=len(answer))
                for answer, tokens in zip(answers, continued["attention_mask"].sum(dim=1).tolist())]

    def _until_stop(self, ids: list[int]) -> tuple[int, ...]:
        return tuple(ids[:next((i for i, token in enumerate(ids) if token in self.stops), len(ids))])
