"""How to load and prompt a VLM family the generic transformers path cannot serve.

Keyed by `config.model_type`, never by the model's name. The generic adapter covers every family
whose processor carries a chat template and loads with `AutoModelForImageTextToText`; the others
override only what differs:

- `paligemma`: no chat template; the prompt is task-prefixed plain text (`<image>answer en …`).
- `qwen2_vl`, `qwen2_5_vl`: the processor counts pixels itself (one LLM token per 28×28), so
  `--max-pixels` is set as its own budget (`size.longest_edge`) instead of resizing beforehand.
- `minicpmv` (MiniCPM-V-2_6), `internvl_chat` (InternVL2), `phi3_v` (Phi-3-vision): remote code
  (`--trust-remote-code`) with their own loaders and chat entry points; they are asked one request
  at a time, so their answers cannot depend on the batch. These three need real weights to run and
  are not exercised by the offline tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image


def _load_auto(source: str, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(source, trust_remote_code=kwargs.get("trust_remote_code", False),
                                              **_hub(kwargs))
    return AutoModelForImageTextToText.from_pretrained(source, **kwargs), processor


def _chat_prompt(processor: Any, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def _processor_inputs(processor: Any, images: Sequence[Image.Image], texts: Sequence[str]) -> Any:
    """A chat template that writes the BOS token itself (Llama-3.2-Vision's `{{- bos_token }}`) must not
    get a second one from the tokenizer, which adds its own unless told not to (Llama 3's does)."""
    bos = getattr(getattr(processor, "tokenizer", processor), "bos_token", None)
    has_bos = bool(bos) and all(text.startswith(bos) for text in texts)
    return processor(images=[[image] for image in images], text=list(texts), padding=True, return_tensors="pt",
                     add_special_tokens=not has_bos)


@dataclass(frozen=True)
class Adapter:
    name: str
    load: Callable[[str, dict[str, Any]], tuple[Any, Any]] = _load_auto
    prompt: Callable[[Any, str], str] = _chat_prompt
    inputs: Callable[[Any, Sequence[Image.Image], Sequence[str]], Any] = _processor_inputs
    generate: Callable[[Any, Sequence[Any]], list[str]] | None = None
    """Set for families that answer through their own `chat` method instead of `model.generate`."""
    needs_chat_template: bool = True
    pixel_budget: Callable[[Any, int | None, int | None], None] | None = None
    """Set for processors with their own pixel budget: (processor, min_pixels, max_pixels). Without
    one, `--max-pixels` downsizes images before the processor."""
    shared_prefix: bool = True
    """False for prefix-LMs (PaliGemma attends both ways over the whole prompt), where a cache of the
    first part of a prompt is not what the full prompt computes; scoring candidates after the whole
    prompt is still exact."""


GENERIC = Adapter("generic")


def _hub(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"revision": kwargs["revision"]} if kwargs.get("revision") else {}


def _paligemma_prompt(processor: Any, question: str) -> str:
    return f"<image>answer en {question}"


def _qwen_pixel_budget(processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    for part in (getattr(processor, "image_processor", None), getattr(processor, "video_processor", None)):
        if part is None:
            continue
        size = dict(part.size)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        if max_pixels is not None and size.get("shortest_edge") and size["shortest_edge"] > size["longest_edge"]:
            size["shortest_edge"] = size["longest_edge"]
        part.size = {key: value for key, value in size.items() if value is not None}


def _load_remote(model_class: str) -> Callable[[str, dict[str, Any]], tuple[Any, Any]]:
    def load(source: str, kwargs: dict[str, Any]) -> tuple[Any, Any]:
        import transformers

        kwargs = {**kwargs, "trust_remote_code": True}
        cls = getattr(transformers, model_class)
        try:
            processor = transformers.AutoProcessor.from_pretrained(source, trust_remote_code=True, **_hub(kwargs))
        except (OSError, ValueError, TypeError):
            processor = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=True, **_hub(kwargs))
        return cls.from_pretrained(source, **kwargs), processor

    return load


def _minicpmv_generate(backend: Any, requests: Sequence[Any]) -> list[str]:
    tokenizer = getattr(backend.processor, "tokenizer", backend.processor)
    return [
        backend.model.chat(image=None, msgs=[{"role": "user", "content": [backend.bounded(r.image), r.prompt]}],
                           tokenizer=tokenizer, sampling=False, max_new_tokens=r.max_new_tokens)
        for r in requests
    ]


def _internvl_generate(backend: Any, requests: Sequence[Any]) -> list[str]:
    """One 448-pixel tile per image (InternVL's `max_num=1`), ImageNet normalisation."""
    import torch
    from torchvision.transforms import v2

    size = backend.model.config.vision_config.image_size
    transform = v2.Compose([v2.PILToTensor(), v2.Resize((size, size), interpolation=v2.InterpolationMode.BICUBIC),
                            v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    tokenizer = getattr(backend.processor, "tokenizer", backend.processor)
    dtype = next(backend.model.parameters()).dtype
    answers = []
    for request in requests:
        pixels = transform(request.image).unsqueeze(0).to(backend.device, dtype)
        answers.append(backend.model.chat(tokenizer, pixels, f"<image>\n{request.prompt}",
                                          {"max_new_tokens": request.max_new_tokens, "do_sample": False}))
    return answers


def _phi3v_generate(backend: Any, requests: Sequence[Any]) -> list[str]:
    processor = backend.processor
    answers = []
    for request in requests:
        messages = [{"role": "user", "content": f"<|image_1|>\n{request.prompt}"}]
        text = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text, [backend.bounded(request.image)], return_tensors="pt").to(backend.device)
        output = backend.model.generate(**inputs, max_new_tokens=request.max_new_tokens, do_sample=False,
                                        eos_token_id=processor.tokenizer.eos_token_id)
        new = output[:, inputs["input_ids"].shape[1]:]
        answers.append(processor.batch_decode(new, skip_special_tokens=True)[0])
    return answers


ADAPTERS: dict[str, Adapter] = {
    "qwen2_vl": Adapter("qwen2_vl", pixel_budget=_qwen_pixel_budget),
    "qwen2_5_vl": Adapter("qwen2_5_vl", pixel_budget=_qwen_pixel_budget),
    "paligemma": Adapter("paligemma", prompt=_paligemma_prompt, needs_chat_template=False, shared_prefix=False),
    "minicpmv": Adapter("minicpmv", load=_load_remote("AutoModel"), generate=_minicpmv_generate,
                        needs_chat_template=False),
    "internvl_chat": Adapter("internvl_chat", load=_load_remote("AutoModel"), generate=_internvl_generate,
                             needs_chat_template=False),
    "phi3_v": Adapter("phi3_v", load=_load_remote("AutoModelForCausalLM"), generate=_phi3v_generate,
                      needs_chat_template=False),
}
