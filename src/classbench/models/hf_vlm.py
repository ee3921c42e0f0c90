"""Vision-language models through transformers: `--model hf:<hub id or local folder>`.

One generic path serves every family whose processor has a chat template (Qwen2-VL, Qwen2.5-VL,
LLaVA-1.5, LLaVA-NeXT, Idefics3, SmolVLM, Llama-3.2-Vision): `AutoProcessor` +
`AutoModelForImageTextToText`, the model's own chat template, left padding, greedy decoding.
Families that differ (no chat template, remote code) are served by an adapter looked up by
`config.model_type` in `hf_adapters.ADAPTERS`, never by the model's name.

Input preparation is one method (`prepare`), so scoring reuses exactly the prompts and pixels
that generation sees; candidate scoring (`score`) and questions over a shared image prefix
(`generate_shared`) live in `hf_prefix`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import torch
from PIL import Image

from classbench.errors import UserError
from classbench.models.base import Generation, GenerationRequest, Generator, ScoreRequest, Scores
from classbench.models import hf_prefix
from classbench.models import remote
from classbench.models.hf_adapters import ADAPTERS, Adapter, GENERIC, load_checked
from classbench.models.torch_utils import file_sha256, peak_gpu_gb, resolve_device

DTYPES: dict[str, Any] = {"auto": "auto", "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})(/|$)")


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
        images = [self._bounded(image) for image in images]
        texts = [self.adapter.prompt(self.processor, prompt) for prompt in prompts]
        inputs = self.adapter.inputs(self.processor, images, texts).to(self.device)
        dtype = self.model.dtype
        for key, value in inputs.items():
            if torch.is_tensor(value) and torch.is_floating_point(value) and value.dtype != dtype:
                inputs[key] = value.to(dtype)
        return inputs

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer a batch; when the batch fails, each request is asked alone so one bad image
        costs one answer, and a request that fails alone comes back with `error` set."""
        if not requests:
            return []
        try:
            return self._generate(requests)
        except (KeyboardInterrupt, UserError):
            raise
        except Exception as error:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(requests) == 1:
                return [Generation(text="", error=f"{type(error).__name__}: {error}")]
        return [generation for request in requests for generation in self.generate([request])]

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
        stops = self._stop_ids()
        generations = []
        for row, request, mask in zip(new_tokens, requests, inputs["attention_mask"]):
            ids = row.tolist()[: request.max_new_tokens]
            length = next((i for i, token in enumerate(ids) if token in stops), len(ids))
            text = self.processor.batch_decode([ids[:length]], skip_special_tokens=True)[0]
            generations.append(Generation(text=text.strip(), tokens_in=int(mask.sum()), tokens_out=length,
                                          latency_s=latency))
        return generations

    def _stop_ids(self) -> set[int]:
        config = self.model.generation_config
        ids: set[int] = set()
        for value in (config.eos_token_id, config.pad_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif value:
                ids.update(value)
        return ids

    def bounded(self, image: Image.Image) -> Image.Image:
        return self._bounded(image)

    def _bounded(self, image: Image.Image) -> Image.Image:
        """Apply `--max-pixels` where the processor has no pixel budget of its own."""
        limit = self.max_pixels
        if limit is None or self.adapter.pixel_budget is not None:
            return image
        width, height = image.size
        if width * height <= limit:
            return image
        scale = (limit / (width * height)) ** 0.5
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        return image.resize(size, Image.Resampling.BICUBIC)

    def peak_gpu_gb(self) -> float | None:
        return peak_gpu_gb()

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_hf(name: str, options: dict[str, Any], device: str) -> HFVisionLanguageModel:
    """Load `name` (hub id or folder). Options: dtype, device_map, attn_implementation,
    max_pixels, min_pixels, trust_remote_code, revision."""
    from transformers import AutoConfig

    options = dict(options)
    local = Path(name).expanduser()
    source = str(local.resolve()) if local.is_dir() else name
    trust = bool(options.get("trust_remote_code", False))
    hub = {"revision": options["revision"]} if options.get("revision") else {}
    try:
        remote.prepare(source, trust, hub)
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust, **hub)
    except ImportError as error:
        raise UserError(f"hf:{name}: its code needs a package that is not installed ({error}); "
                        "install it (pip install 'classbench[hf]' brings those the published models need)") from None
    except ValueError as error:
        if "trust_remote_code" in str(error):
            raise UserError(f"hf:{name} ships its own model code; run it with --trust-remote-code "
                            "if you trust that repository") from None
        raise UserError(f"hf:{name}: cannot read its config ({error})") from None
    except OSError as error:
        raise UserError(f"hf:{name}: not a local folder and not loadable from the hub ({error}). "
                        "Give a folder with config.json, or a hub id such as Qwen/Qwen2-VL-2B-Instruct.") from None
    adapter = ADAPTERS.get(config.model_type, GENERIC)
    dtype_name = str(options.get("dtype") or "auto")
    if dtype_name not in DTYPES:
        raise UserError(f"--dtype {dtype_name!r}: choose one of {', '.join(DTYPES)}")
    target = resolve_device(device)
    load_kwargs: dict[str, Any] = {"dtype": DTYPES[dtype_name], "trust_remote_code": trust, **hub}
    if options.get("attn_implementation"):
        load_kwargs["attn_implementation"] = options["attn_implementation"]
    device_map = options.get("device_map")
    if device_map:
        load_kwargs["device_map"] = device_map
    model, processor, checks = load_checked(adapter, name, config.model_type, source, load_kwargs)
    if not device_map:
        model.to(target)
    model.eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    if adapter.pixel_budget is not None and (options.get("min_pixels") or options.get("max_pixels")):
        adapter.pixel_budget(processor, options.get("min_pixels"), options.get("max_pixels"))
    if adapter.needs_chat_template and not _chat_template(processor):
        raise UserError(f"hf:{name} ({config.model_type}) has no chat template and no registered adapter; "
                        "add one to classbench.models.hf_adapters.ADAPTERS keyed by its model_type")
    first = next(model.parameters())
    settings = {
        "device": str(first.device),
        "device_map": device_map,
        "dtype": str(first.dtype).removeprefix("torch."),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "model_type": config.model_type,
        "adapter": adapter.name,
        "max_pixels": options.get("max_pixels"),
        "image_processor": _image_settings(processor),
        "chat_template_sha256": _sha(_chat_template(processor)),
        **checks,
    }
    return HFVisionLanguageModel(
        model_id=f"hf:{name}",
        revision=_revision(model, local if local.is_dir() else None),
        settings=settings,
        model=model,
        processor=processor,
        adapter=adapter,
        device=first.device,
        max_pixels=options.get("max_pixels"),
    )


def _chat_template(processor: Any) -> str | None:
    template = getattr(processor, "chat_template", None)
    if not template:
        template = getattr(getattr(processor, "tokenizer", None), "chat_template", None)
    return template if isinstance(template, str) else (json.dumps(template, sort_keys=True) if template else None)


def _image_settings(processor: Any) -> dict[str, Any]:
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None or not hasattr(image_processor, "to_dict"):
        return {}
    return json.loads(json.dumps(image_processor.to_dict(), default=str))


def _sha(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest()[:16] if text else None


def _revision(model: Any, folder: Path | None) -> str | None:
    """The hub commit when known (also for a folder inside the hub cache), else a hash of the weights."""
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return commit
    if folder is None:
        return None
    snapshot = _SNAPSHOT.search(str(folder.resolve()) + "/")
    if snapshot:
        return snapshot.group(1)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name.endswith(_WEIGHT_SUFFIXES):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(file_sha256(path).encode())
    return f"sha256:{digest.hexdigest()[:16]}"
