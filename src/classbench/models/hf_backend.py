"""The transformers VLM backend: one loaded model and processor answering batches of questions.

Loaded by `hf_vlm.load_hf`. Input preparation is one method (`prepare`), so scoring reuses exactly
the prompts and pixels that generation sees; candidate scoring (`score`) and questions over a
shared image prefix (`generate_shared`) live in `hf_prefix`, which uses only the public methods
below (its `PrefixHost` protocol). Family differences come from the adapter (`hf_adapters`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import torch
from PIL import Image

from classbench.images import within_pixels
from classbench.models import hf_prefix
from classbench.models.base import Generation, GenerationRequest, Generator, ScoreRequest, Scores
from classbench.models.hf_adapters import GENERIC, Adapter
from classbench.models.torch_utils import peak_gpu_gb


@dataclass
class HFVisionLanguageModel(Generator):
    model: Any = None
    processor: Any = None
    adapter: Adapter = GENERIC
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    max_pixels: int | None = None
    _text_ids: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _answer_ids: dict[tuple[str, int], list[int]] = field(default_factory=dict, repr=False)

    @property
    def capabilities(self) -> frozenset[str]:  # type: ignore[override]
        """Scoring and shared prefixes run the model's own forward, which remote-code families do not share."""
        if self.adapter.generate is not None:
            return frozenset({"generate"})
        return frozenset({"generate", "score", "shared_prefix"})

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def text_ids(self, prompt: str) -> list[int]:
        """The rendered prompt's token ids, text only (the image placeholder unexpanded); cached, as
        the same questions are asked about every image."""
        if prompt not in self._text_ids:
            self._text_ids[prompt] = self.tokenizer.encode(self.adapter.prompt(self.processor, prompt),
                                                           add_special_tokens=False)
        return self._text_ids[prompt]

    def answer_ids(self, name: str, prompt_ids: Sequence[int]) -> list[int]:
        """A candidate's tokens after this prompt (`hf_prefix.answer_ids`); cached by the prompt's last
        token, the only part of the prompt the rule reads, as every image asks the same candidates."""
        key = (name, prompt_ids[-1] if prompt_ids else -1)
        if key not in self._answer_ids:
            self._answer_ids[key] = hf_prefix.answer_ids(self.tokenizer, name, prompt_ids)
        return self._answer_ids[key]

    @torch.inference_mode()
    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]:
        """Each request's image and prompt run once; its candidates are scored over their shared cache
        (`hf_prefix`). One image at a time, so scores never depend on the batch."""
        return [hf_prefix.score(self, request) for request in requests]

    @torch.inference_mode()
    def generate_shared(self, asks: Sequence[tuple[Image.Image, Sequence[str]]], max_new_tokens: int,
                        stop: Callable[[Generation], bool] | None = None) -> list[list[Generation]]:
        """The answers `generate` gives to several questions per image, with each image and the
        prompts' common start computed once (`hf_prefix`); with `stop`, an image's answers end at the
        first one it accepts, and the questions after it are mostly not computed."""
        return hf_prefix.generate_shared(self, asks, max_new_tokens, stop)

    def prepare(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> Any:
        """Model inputs for a batch of (image, user prompt) pairs, left-padded, on the model's device."""
        images = [self.bounded(image) for image in images]
        texts = [self.adapter.prompt(self.processor, prompt) for prompt in prompts]
        inputs = self.adapter.inputs(self.processor, images, texts).to(self.device)
        dtype = self.model.dtype
        for key, value in inputs.items():
            if torch.is_tensor(value) and torch.is_floating_point(value) and value.dtype != dtype:
                inputs[key] = value.to(dtype)
        return inputs

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer a batch. A batch that fails raises: the runner asks its images one by one, so one bad
        image costs one image (`runner`), and memory is released for that retry."""
        if not requests:
            return []
        try:
            return self._generate(requests)
        except BaseException:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise

    def _generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        started = perf_counter()
        if self.adapter.generate is not None:
            texts = self.adapter.generate(self, requests)
            latency = (perf_counter() - started) / len(requests)
            return [Generation(text=text.strip(), latency_s=latency) for text in texts]
        inputs = self.prepare([r.image for r in requests], [r.prompt for r in requests])
        output = self.model.generate(
            **inputs,
            max_new_tokens=max(r.max_new_tokens for r in requests),
            do_sample=False,
            num_beams=1,
            repetition_penalty=1.0,
        )
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[:, prompt_length:]
        latency = (perf_counter() - started) / len(requests)
        stops = self.stop_ids()
        generations = []
        for row, request, mask in zip(new_tokens, requests, inputs["attention_mask"]):
            ids = row.tolist()[: request.max_new_tokens]
            length = next((i for i, token in enumerate(ids) if token in stops), len(ids))
            text = self.processor.batch_decode([ids[:length]], skip_special_tokens=True)[0]
            generations.append(Generation(text=text.strip(), tokens_in=int(mask.sum()), tokens_out=length,
                                          latency_s=latency))
        return generations

    def stop_ids(self) -> set[int]:
        """The tokens that end an answer: the generation config's eos and pad ids."""
        config = self.model.generation_config
        ids: set[int] = set()
        for value in (config.eos_token_id, config.pad_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif value:
                ids.update(value)
        return ids

    def bounded(self, image: Image.Image) -> Image.Image:
        """Apply `--max-pixels` where the processor has no pixel budget of its own."""
        return image if self.adapter.pixel_budget is not None else within_pixels(image, self.max_pixels)

    def position_state(self, rows: int) -> Any:
        """Position state the model keeps between calls, one row per image of the last prefill (Qwen's
        M-RoPE `rope_deltas`), or None: a continuation must carry its image's row, like the cache."""
        deltas = getattr(getattr(self.model, "model", None), "rope_deltas", None)
        return deltas if torch.is_tensor(deltas) and deltas.shape[0] == rows else None

    def set_position_state(self, state: Any) -> None:
        """Give the next call the rows of `position_state` it continues (see there)."""
        self.model.model.rope_deltas = state

    def peak_gpu_gb(self) -> float | None:
        return peak_gpu_gb()

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
