"""MiniCPM-V-2_6 (`minicpmv`): prompts and greedy answers through the model's own code.

Inputs are built as `MiniCPMV.chat` builds them (the image as `(<image>./</image>)` before the
question in the tokenizer's chat template, the remote processor's slices and image bounds, the
model's `get_vllm_embedding` merging image features into the text embeddings); decoding is
`decode.greedy` over its Qwen2 language model instead of `chat(sampling=False)`, which is beam
search (`num_beams=3`) with `repetition_penalty=1.2`.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from classbench.models.remote import decode

IMAGE_TAG = "(<image>./</image>)"


def prompt(processor: Any, question: str) -> str:
    messages = [{"role": "user", "content": f"{IMAGE_TAG}\n{question}"}]
    return processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def forward_for(backend: Any, image: Image.Image, question: str) -> decode.Forward:
    """The decoding step (see `decode.Forward`) for one image and question."""
    model, processor = backend.model, backend.processor
    inputs = processor([prompt(processor, question)], [[image]], return_tensors="pt").to(backend.device)
    data = {key: inputs[key] for key in ("input_ids", "image_bound", "pixel_values", "tgt_sizes")}
    embeds, _ = model.get_vllm_embedding(data)
    llm = model.llm
    embed_tokens = llm.get_input_embeddings()

    def forward(generated: list[int], cache: Any) -> tuple[torch.Tensor, Any]:
        if cache is None:
            tokens = torch.tensor([generated], dtype=torch.long, device=embeds.device)
            full = torch.cat([embeds, embed_tokens(tokens).to(embeds.dtype)], dim=1)
            output = llm(inputs_embeds=full, use_cache=True)
        else:
            tokens = torch.tensor([[generated[-1]]], dtype=torch.long, device=embeds.device)
            output = llm(input_ids=tokens, cache=cache, use_cache=True)
        return decode.last_logits(output), decode.cache_of(output)

    return forward


def stops(backend: Any) -> set[int]:
    return decode.stop_ids(backend.processor.tokenizer, backend.model.llm.generation_config, backend.model.terminators)
