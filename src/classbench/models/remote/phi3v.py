"""Phi-3-vision (`phi3_v`): prompts and greedy answers through the model's own code.

The prompt is the tokenizer's chat template with `<|image_1|>` before the question, and the remote
processor turns it into the ids (negative placeholders where image features go), crops and sizes
the model's forward expects. Decoding is `decode.greedy` over the model's forward; its 4.x cache
calls run on transformers 5 through `legacy.install_legacy_cache_api`.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from classbench.models.remote import decode

END_OF_TURN = ("<|end|>",)


def prompt(processor: Any, question: str) -> str:
    messages = [{"role": "user", "content": f"<|image_1|>\n{question}"}]
    return processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def forward_for(backend: Any, image: Image.Image, question: str) -> decode.Forward:
    model = backend.model
    inputs = backend.processor(prompt(backend.processor, question), [image], return_tensors="pt").to(backend.device)
    dtype = next(model.parameters()).dtype
    prompt_ids, pixel_values = inputs["input_ids"], inputs["pixel_values"].to(dtype)

    def forward(generated: list[int], cache: Any) -> tuple[torch.Tensor, Any]:
        new = torch.tensor([generated], dtype=torch.long, device=prompt_ids.device)
        if cache is None:
            # The image embedding overwrites its input ids in place, so each full pass gets a copy.
            ids = torch.cat([prompt_ids, new], dim=1).clone()
            output = model(input_ids=ids, pixel_values=pixel_values, image_sizes=inputs["image_sizes"],
                           attention_mask=torch.ones_like(ids), use_cache=True)
        else:
            length = prompt_ids.shape[1] + len(generated)
            mask = torch.ones((1, length), dtype=torch.long, device=prompt_ids.device)
            output = model(input_ids=new[:, -1:], past_key_values=cache, attention_mask=mask, use_cache=True)
        return decode.last_logits(output), decode.cache_of(output)

    return forward


def stops(backend: Any) -> set[int]:
    return decode.stop_ids(backend.processor.tokenizer, getattr(backend.model, "generation_config", None), END_OF_TURN)
