"""How to load and prompt a VLM family the generic transformers path cannot serve.

Keyed by `config.model_type`, never by the model's name. The generic adapter covers every family
whose processor carries a chat template and loads with `AutoModelForImageTextToText`; the others
override only what differs:

- `paligemma`: no chat template; the prompt is task-prefixed plain text (`<image>answer en …`).
- `qwen2_vl`, `qwen2_5_vl`: the processor counts pixels itself (one LLM token per 28×28), so
  `--max-pixels` is set as its own budget (`size.longest_edge`) instead of resizing beforehand.
- `minicpmv` (MiniCPM-V-2_6), `internvl_chat` (InternVL2), `phi3_v` (Phi-3-vision): remote code
  (`--trust-remote-code`), loaded as their checkpoints declare with the compatibility layer of
  `classbench.models.remote` (which also verifies their buffers), prompted as their own `chat`
  methods prompt, and decoded greedily by `remote.decode`. They are asked one request at a time,
  so their answers cannot depend on the batch. Tests run them on tiny random-weight models built
  from their published code (tests/tinymodels/tiny_remote.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
    generation: Mapping[str, Any] = field(default_factory=lambda: dict(GENERATE_GREEDY), hash=False)
    """How answers are decoded, recorded in the run's settings (provenance)."""
    shared_prefix: bool = True
    """False for prefix-LMs (PaliGemma attends both ways over the whole prompt), where a cache of the
    first part of a prompt is not what the full prompt computes; scoring candidates after the whole
    prompt is still exact."""


GENERATE_GREEDY: dict[str, Any] = {"decoding": "greedy", "num_beams": 1, "do_sample": False,
                                   "repetition_penalty": 1.0, "decoder": "transformers generate"}
REMOTE_GREEDY: dict[str, Any] = {**GENERATE_GREEDY,
                                 "decoder": "classbench.models.remote.decode (the model's forward with its KV cache)"}

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


def _load_remote(auto_name: str) -> Callable[[str, dict[str, Any]], tuple[Any, Any]]:
    """The checkpoint's own class (`config.auto_map[auto_name]`) with its family's patches
    (`classbench.models.remote`), and its processor, or its tokenizer where it ships no processor."""
    def load(source: str, kwargs: dict[str, Any]) -> tuple[Any, Any]:
        import transformers

        from classbench.models import remote

        hub = _hub(kwargs)
        kwargs = remote.attention(source, {**kwargs, "trust_remote_code": True}, hub)
        cls = remote.model_class(source, auto_name, hub)
        try:
            processor = transformers.AutoProcessor.from_pretrained(source, trust_remote_code=True, **hub)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            processor = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=True, **hub)
        return cls.from_pretrained(source, **kwargs), processor

    return load


def _remote_generate(module: str) -> Callable[[Any, Sequence[Any]], list[str]]:
    def generate(backend: Any, requests: Sequence[Any]) -> list[str]:
        import importlib

        from classbench.models.remote import decode

        family = importlib.import_module(f"classbench.models.remote.{module}")
        return decode.answer_each(backend, requests, family.forward_for, family.stops)

    return generate


def load_checked(adapter: Adapter, name: str, model_type: str, source: str, kwargs: dict[str, Any]
                 ) -> tuple[Any, Any, dict[str, Any]]:
    """`adapter.load`, with any failure as one line naming the model, its family and what to do; a
    remote-code model's non-persistent buffers are then verified (`remote.buffers`). Returns the
    model, the processor and what goes into the run's settings about decoding and buffers."""
    from classbench.errors import UserError

    trust = bool(kwargs.get("trust_remote_code"))
    try:
        model, processor = adapter.load(source, kwargs)
    except UserError:
        raise
    except Exception as error:
        raise code_error(name, model_type, error, trust) from None
    notes: dict[str, Any] = {"generation": dict(adapter.generation)}
    if trust and _runs_remote_code(model):
        from classbench.models.remote import buffers

        checked = buffers.non_persistent(model)
        notes["buffers"] = {"checked": sorted(checked), "recomputed": buffers.verify(model, f"hf:{name}")}
    return model, processor, notes


def _runs_remote_code(model: Any) -> bool:
    """Whether the model's class came from the checkpoint's own code (transformers imports it into its
    `transformers_modules` package), rather than from transformers itself."""
    from transformers.utils.hub import TRANSFORMERS_DYNAMIC_MODULE_NAME

    return type(model).__module__.split(".", 1)[0] == TRANSFORMERS_DYNAMIC_MODULE_NAME


def code_error(name: str, model_type: str | None, error: Exception, trust: bool) -> Exception:
    """A failure while importing or running a checkpoint's code as one line: the model, its family,
    what failed, and what to do about it. A `UserError` passes through unchanged."""
    from classbench.errors import UserError

    if isinstance(error, UserError):
        return error
    family = model_type or "unknown model_type"
    missing = getattr(error, "name", None) or ""
    if isinstance(error, ImportError) and missing.startswith("transformers."):
        import transformers

        return UserError(f"hf:{name} ({family}): its code imports {missing}, which transformers "
                         f"{transformers.__version__} does not have. {_load_advice(model_type or '', trust)}")
    if isinstance(error, ImportError):
        advice = ("install flash-attn, or choose another attention with --attn-implementation eager"
                  if "flash" in str(error).lower() else
                  "install it (pip install 'classbench[hf]' brings those the published models need)")
        return UserError(f"hf:{name} ({family}): its code needs a package that is not installed "
                         f"({_first_line(error)}); {advice}")
    return UserError(f"hf:{name} ({family}): failed to load ({type(error).__name__}: {_first_line(error)}). "
                     f"{_load_advice(model_type or '', trust)}")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"


def _load_advice(model_type: str, trust: bool) -> str:
    import transformers

    from classbench.models import remote

    version = transformers.__version__
    if model_type in remote.FAMILIES:
        return (f"classbench adapts this family's code to transformers {version} (classbench.models.remote); "
                "check the checkpoint is complete, or report this line with your transformers version")
    if trust:
        return (f"Its own code may not run on transformers {version}: serve it with vLLM "
                "(vllm serve MODEL --trust-remote-code, then --model openai:MODEL --base-url URL)")
    return (f"Check that transformers {version} supports this vision-language checkpoint; a model that ships "
            "its own code needs --trust-remote-code")


ADAPTERS: dict[str, Adapter] = {
    "qwen2_vl": Adapter("qwen2_vl", pixel_budget=_qwen_pixel_budget),
    "qwen2_5_vl": Adapter("qwen2_5_vl", pixel_budget=_qwen_pixel_budget),
    "paligemma": Adapter("paligemma", prompt=_paligemma_prompt, needs_chat_template=False, shared_prefix=False),
    "minicpmv": Adapter("minicpmv", load=_load_remote("AutoModel"), generate=_remote_generate("minicpmv"),
                        needs_chat_template=False, generation=REMOTE_GREEDY),
    "internvl_chat": Adapter("internvl_chat", load=_load_remote("AutoModel"), generate=_remote_generate("internvl"),
                             needs_chat_template=False, generation=REMOTE_GREEDY),
    "phi3_v": Adapter("phi3_v", load=_load_remote("AutoModelForCausalLM"), generate=_remote_generate("phi3v"),
                      needs_chat_template=False, generation=REMOTE_GREEDY),
}
