"""InternVL2 (`internvl_chat`, InternViT + InternLM2): prompts and greedy answers through its own code.

Inputs are built as `InternVLChatModel.chat` builds them: the model's own conversation template
(`conversation.get_conv_template(model.template)` with the model's system message), `<image>`
replaced by `<img>` + `num_image_token` × `<IMG_CONTEXT>` + `</img>`, and the features of
`extract_feature` written over the context tokens' embeddings. One 448-pixel tile per image
(InternVL's `max_num=1`; dynamic tiling is not used), ImageNet normalisation. Decoding is
`decode.greedy` over InternLM2, which on transformers 5 has no `generate` and keeps tuple caches.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from PIL import Image

from classbench.models.remote import decode

IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _template(model: Any) -> Any:
    template = sys.modules[type(model).__module__].get_conv_template(model.template)
    template.system_message = model.system_message
    return template


def prompt(model: Any, question: str) -> str:
    """The chat text with the image's context tokens in place, as `chat` makes it."""
    template = _template(model)
    template.append_message(template.roles[0], f"<image>\n{question}")
    template.append_message(template.roles[1], None)
    image_tokens = IMG_START + IMG_CONTEXT * model.num_image_token + IMG_END
    return template.get_prompt().replace("<image>", image_tokens, 1)


def pixels(backend: Any, image: Image.Image) -> torch.Tensor:
    from torchvision.transforms import v2

    config = backend.model.config
    size = config.force_image_size or config.vision_config.image_size
    transform = v2.Compose([v2.PILToTensor(), v2.Resize((size, size), interpolation=v2.InterpolationMode.BICUBIC),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=_MEAN, std=_STD)])
    dtype = next(backend.model.parameters()).dtype
    return transform(image.convert("RGB")).unsqueeze(0).to(backend.device, dtype)


def forward_for(backend: Any, image: Image.Image, question: str) -> decode.Forward:
    model, tokenizer = backend.model, backend.tokenizer
    ids = tokenizer(prompt(model, question), return_tensors="pt")["input_ids"].to(backend.device)
    lm = model.language_model
    embed_tokens = lm.get_input_embeddings()
    embeds = embed_tokens(ids)
    features = model.extract_feature(pixels(backend, image))
    selected = ids[0] == tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    embeds[0, selected] = features.reshape(-1, embeds.shape[-1]).to(embeds.dtype)

    def forward(generated: list[int], cache: Any) -> tuple[torch.Tensor, Any]:
        if cache is None:
            tokens = torch.tensor([generated], dtype=torch.long, device=ids.device)
            output = lm(inputs_embeds=torch.cat([embeds, embed_tokens(tokens)], dim=1), use_cache=True)
        else:
            tokens = torch.tensor([[generated[-1]]], dtype=torch.long, device=ids.device)
            output = lm(input_ids=tokens, past_key_values=cache, use_cache=True)
        return decode.last_logits(output), decode.cache_of(output)

    return forward


def stops(backend: Any) -> set[int]:
    """The template's separator ends a turn (`chat` sets it as eos), and so does the tokenizer's eos."""
    separator = _template(backend.model).sep.strip()
    config = getattr(backend.model.language_model, "generation_config", None)
    return decode.stop_ids(backend.tokenizer, config, [separator])
