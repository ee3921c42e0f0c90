"""Tiny, randomly initialised VLMs of real architectures, built offline for tests.

Real VLM weights cannot be downloaded on the test machines, yet the code paths a user's
``Qwen/Qwen2-VL-7B-Instruct`` takes (``AutoProcessor`` / ``AutoModelForImageTextToText``, chat
templates, image-token expansion, batched left-padded ``generate``) are exactly what classbench must
exercise. So each builder makes the real config, processor and tokenizer classes at toy sizes and
saves them with ``save_pretrained``; a test then loads the folder like a hub checkpoint.

Random weights answer junk, which is fine for plumbing but useless for testing a strategy's logic.
A :class:`Rig` edits the weights after initialisation so that the real forward pass produces a
known answer: a constant word, or ``yes``/``no`` depending on whether a trigger word is in the
prompt. See :func:`_apply_rig` for how.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

ARCHITECTURES: tuple[str, ...] = (
    "qwen2_vl",
    "qwen2_5_vl",
    "llava",
    "llava_next",
    "idefics3",
    "smolvlm",
    "paligemma",
)

RIGGABLE: dict[str, set[str]] = {arch: {"answer", "yes_if"} for arch in ARCHITECTURES}
"""Which :class:`Rig` kinds each architecture supports (all of them, as checked by the tests)."""

STANDARD_PROMPTS: tuple[str, ...] = (
    "Question: Answer this question in a single word: What type of object is in this photo? "
    "Choose one from {classes}. Answer:",
    "Answer the question in a single word: yes or no. Is the {class} in this photo?",
)

_TEXT_HIDDEN = 64
_VISION_HIDDEN = 32


@dataclass(frozen=True)
class Rig:
    """How to make a tiny model answer deterministically through its real forward pass.

    Exactly one of ``answer`` (always answer this text) or ``yes_if`` (answer ``yes`` when this
    word occurs anywhere in the prompt, else ``no``) must be set. ``Rig(answer="no")`` is the
    always-no model.
    """

    answer: str | None = None
    yes_if: str | None = None
    yes: str = "yes"
    no: str = "no"

    def __post_init__(self) -> None:
        if (self.answer is None) == (self.yes_if is None):
            raise ValueError("Rig needs exactly one of answer= or yes_if=, e.g. Rig(answer='cat').")
        if self.yes_if is not None and (not self.yes_if.strip() or " " in self.yes_if.strip()):
            raise ValueError(f"Rig(yes_if={self.yes_if!r}) must be a single word.")

    @property
    def kind(self) -> str:
        return "answer" if self.answer is not None else "yes_if"

    def words(self) -> list[str]:
        """Words the tokenizer must know as whole tokens for the rig to be expressible."""
        if self.answer is not None:
            return self.answer.split()
        return [self.yes_if or "", self.yes, self.no]


@dataclass(frozen=True)
class _Family:
    """Tokenizer conventions shared by the architectures of one model family."""

    special_tokens: tuple[str, ...]
    pad: str
    eos: str
    bos: str | None
    add_bos: bool
    chat_template: str | None


def _lit(text: str) -> str:
    """A Jinja expression printing ``text``; HF renders templates with trim_blocks, which would
    swallow a literal newline after a tag, so newlines must be printed, not written."""
    return "{{ " + json.dumps(text) + " }}"


def _chat_template(*, start: str, roles: dict[str, str], end: str, image: str, generation: str) -> str:
    """One Jinja template shape for every family; only the markers differ between families."""
    role_branches = "".join(
        f"{{% {'if' if i == 0 else 'elif'} message['role'] == {json.dumps(role)} %}}{_lit(header)}"
        for i, (role, header) in enumerate(roles.items())
    )
    return (
        _lit(start)
        + "{% for message in messages %}"
        + role_branches
        + "{% else %}{{ message['role'] }}: {% endif %}"
        + "{% if message['content'] is string %}{{ message['content'] }}"
        + "{% else %}{% for part in message['content'] %}"
        + "{% if part['type'] == 'image' %}"
        + _lit(image)
        + "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        + "{% endfor %}{% endif %}"
        + _lit(end)
        + "{% endfor %}"
        + "{% if add_generation_prompt %}"
        + _lit(generation)
        + "{% endif %}"
    )


_QWEN = _Family(
    special_tokens=(
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ),
    pad="<|endoftext|>",
    eos="<|im_end|>",
    bos=None,
    add_bos=False,
    chat_template=_chat_template(
        start="",
        roles={
            "system": "<|im_start|>system\n",
            "user": "<|im_start|>user\n",
            "assistant": "<|im_start|>assistant\n",
        },
        end="<|im_end|>\n",
        image="<|vision_start|><|image_pad|><|vision_end|>",
        generation="<|im_start|>assistant\n",
    ),
)

_LLAVA = _Family(
    special_tokens=("<unk>", "<s>", "</s>", "<pad>", "<image>"),
    pad="<pad>",
    eos="</s>",
    bos="<s>",
    add_bos=True,
    chat_template=_chat_template(
        start="",
        roles={"system": "SYSTEM: ", "user": "USER: ", "assistant": "ASSISTANT: "},
        end="\n",
        image="<image>\n",
        generation="ASSISTANT:",
    ),
)

_IDEFICS = _Family(
    special_tokens=(
        "<|endoftext|>",
        "<|im_start|>",
        "<end_of_utterance>",
        "<image>",
        "<fake_token_around_image>",
        "<global-img>",
        *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
    ),
    pad="<|endoftext|>",
    eos="<end_of_utterance>",
    bos="<|im_start|>",
    add_bos=False,
    chat_template=_chat_template(
        start="<|im_start|>",
        roles={"system": "System: ", "user": "User:", "assistant": "Assistant:"},
        end="<end_of_utterance>\n",
        image="<image>",
        generation="Assistant:",
    ),
)

_PALIGEMMA = _Family(
    special_tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<image>"),
    pad="<pad>",
    eos="<eos>",
    bos="<bos>",
    add_bos=False,
    chat_template=None,
)

_FAMILIES: dict[str, _Family] = {
    "qwen2_vl": _QWEN,
    "qwen2_5_vl": _QWEN,
    "llava": _LLAVA,
    "llava_next": _LLAVA,
    "idefics3": _IDEFICS,
    "smolvlm": _IDEFICS,
    "paligemma": _PALIGEMMA,
}

# The last layer that writes image features into the text model's residual stream; a rig zeroes
# its rows for the rig's dimensions so that no image can disturb them.
_IMAGE_FEATURE_WRITERS: dict[str, tuple[str, ...]] = {
    "qwen2_vl": ("model.visual.merger.mlp.2",),
    "qwen2_5_vl": ("model.visual.merger.mlp.2",),
    "llava": ("model.multi_modal_projector.linear_2",),
    "llava_next": ("model.multi_modal_projector.linear_2",),
    "idefics3": ("model.connector.modality_projection.proj",),
    "smolvlm": ("model.connector.modality_projection.proj",),
    "paligemma": ("model.multi_modal_projector.linear",),
}


def _corpus(words: Sequence[str]) -> list[str]:
    """Text the BPE is trained on: repetition makes every word (with and without a leading
    space) merge into a single token, so a class name is one token like in a real vocabulary."""
    base = [*STANDARD_PROMPTS, "yes no Yes No", "User: Assistant: USER: ASSISTANT: answer en"]
    vocab = ["yes", "no", "Yes", "No", *words]
    lines = base * 4
    for word in vocab:
        lines += [word, f" {word}", f"Is the {word} in this photo? {word}."] * 3
    return lines


def _train_tokenizer(family: _Family, words: Sequence[str]) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8192,
        min_frequency=1,
        special_tokens=list(family.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(words), trainer)
    if family.add_bos and family.bos is not None:
        bos_id = bpe.token_to_id(family.bos)
        bpe.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A $B", special_tokens=[(family.bos, bos_id)]
        )
    else:
        bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    named = {"pad_token": family.pad, "eos_token": family.eos}
    if family.bos is not None:
        named["bos_token"] = family.bos
    if "<unk>" in family.special_tokens:
        named["unk_token"] = "<unk>"
    extra = [t for t in family.special_tokens if t not in named.values()]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, padding_side="left", additional_special_tokens=extra, **named
    )
    if family.chat_template is not None:
        tokenizer.chat_template = family.chat_template
    return tokenizer


def _text_config(vocab_size: int, pad_id: int, eos_id: int, bos_id: int | None) -> dict[str, Any]:
    """Llama-shaped text settings most families share; two layers so a rig can use one layer
    for its attention trick while the other shows that untouched layers pass through."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=2 * _TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=bos_id,
        tie_word_embeddings=False,
    )


def _small_vision(**overrides: Any) -> dict[str, Any]:
    return dict(
        hidden_size=_VISION_HIDDEN,
        intermediate_size=2 * _VISION_HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        **overrides,
    )


def _build_qwen(arch: str, tokenizer: PreTrainedTokenizerFast) -> tuple[PreTrainedModel, Any]:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    ids = tokenizer.convert_tokens_to_ids
    text = _text_config(len(tokenizer), ids("<|endoftext|>"), ids("<|im_end|>"), None)
    # mrope_section splits head_dim/2 rotary frequencies over (time, height, width).
    head_dim = _TEXT_HIDDEN // text["num_attention_heads"]
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    assert sum(text["rope_parameters"]["mrope_section"]) == head_dim // 2
    token_ids = dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    if arch == "qwen2_vl":
        vision = dict(depth=1, embed_dim=_VISION_HIDDEN, hidden_size=_TEXT_HIDDEN, mlp_ratio=2, num_heads=2)
        config = Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **token_ids)
        model = Qwen2VLForConditionalGeneration(config)
        processor_cls: Any = Qwen2VLProcessor
    else:
        vision = dict(
            depth=1,
            hidden_size=_VISION_HIDDEN,
            intermediate_size=2 * _VISION_HIDDEN,
            num_heads=2,
            out_hidden_size=_TEXT_HIDDEN,
            fullatt_block_indexes=[0],
        )
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **token_ids)
        model = Qwen2_5_VLForConditionalGeneration(config)
        processor_cls = Qwen2_5_VLProcessor
    # One LLM token per 28x28 pixels: pinning the pixel budget to 56x56 keeps every image at
    # 4 image tokens however large the test image is.
    pixels = {"min_pixels": 56 * 56, "max_pixels": 56 * 56}
    size = {"shortest_edge": 56 * 56, "longest_edge": 56 * 56}
    processor = processor_cls(
        image_processor=Qwen2VLImageProcessor(size=size, **pixels),
        video_processor=Qwen2VLVideoProcessor(size=size, **pixels),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    return model, processor


def _build_llava(arch: str, tokenizer: PreTrainedTokenizerFast) -> tuple[PreTrainedModel, Any]:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        LlavaProcessor,
    )

    ids = tokenizer.convert_tokens_to_ids
    text = LlamaConfig(**_text_config(len(tokenizer), ids("<pad>"), ids("</s>"), ids("<s>")))
    # 28px images in 14px patches: 4 patch tokens plus CLS, which the "default" strategy drops;
    # the processor must expand <image> to exactly the count the vision tower produces.
    vision = CLIPVisionConfig(**_small_vision(image_size=28, patch_size=14, projection_dim=_VISION_HIDDEN))
    common = dict(
        vision_config=vision,
        text_config=text,
        image_token_index=ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    expansion = dict(patch_size=14, num_additional_image_tokens=1, vision_feature_select_strategy="default")
    if arch == "llava":
        model = LlavaForConditionalGeneration(LlavaConfig(**common))
        image_processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
        processor: Any = LlavaProcessor(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template, **expansion
        )
    else:
        pinpoints = [[28, 28], [28, 56], [56, 28]]
        model = LlavaNextForConditionalGeneration(LlavaNextConfig(image_grid_pinpoints=pinpoints, **common))
        image_processor = LlavaNextImageProcessor(
            size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}, image_grid_pinpoints=pinpoints
        )
        processor = LlavaNextProcessor(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template, **expansion
        )
    return model, processor


def _build_idefics(arch: str, tokenizer: PreTrainedTokenizerFast) -> tuple[PreTrainedModel, Any]:
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    ids = tokenizer.convert_tokens_to_ids
    text = LlamaConfig(**_text_config(len(tokenizer), ids("<|endoftext|>"), ids("<end_of_utterance>"), None))
    image_px, patch, scale = 32, 8, 2
    # image_seq_len must equal (image/patch)^2 / scale_factor^2, the pixel-shuffle output.
    image_seq_len = (image_px // patch) ** 2 // scale**2
    vision = _small_vision(image_size=image_px, patch_size=patch)
    common = dict(
        text_config=text, scale_factor=scale, image_token_id=ids("<image>"), tie_word_embeddings=False
    )
    sizes = dict(do_image_splitting=False, size={"longest_edge": image_px}, max_image_size={"longest_edge": image_px})
    if arch == "idefics3":
        model = Idefics3ForConditionalGeneration(
            Idefics3Config(vision_config=Idefics3VisionConfig(**vision), **common)
        )
        processor: Any = Idefics3Processor(
            image_processor=Idefics3ImageProcessor(**sizes),
            tokenizer=tokenizer,
            image_seq_len=image_seq_len,
            chat_template=tokenizer.chat_template,
        )
    else:
        from transformers import SmolVLMVisionConfig

        model = SmolVLMForConditionalGeneration(SmolVLMConfig(vision_config=SmolVLMVisionConfig(**vision), **common))
        processor = SmolVLMProcessor(
            image_processor=SmolVLMImageProcessor(**sizes),
            video_processor=SmolVLMVideoProcessor(**sizes),
            tokenizer=tokenizer,
            image_seq_len=image_seq_len,
            chat_template=tokenizer.chat_template,
        )
    return model, processor


def _build_paligemma(arch: str, tokenizer: PreTrainedTokenizerFast) -> tuple[PreTrainedModel, Any]:
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    image_px, patch = 28, 14
    image_processor = SiglipImageProcessor(size={"height": image_px, "width": image_px})
    image_processor.image_seq_length = (image_px // patch) ** 2
    # The processor adds 1,152 <loc>/<seg> tokens, so the vocabulary is only known afterwards.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    text = GemmaConfig(
        **{
            **_text_config(len(tokenizer), ids("<pad>"), ids("<eos>"), ids("<bos>")),
            "num_key_value_heads": 1,
            "head_dim": _TEXT_HIDDEN // 4,
        }
    )
    vision = SiglipVisionConfig(**_small_vision(image_size=image_px, patch_size=patch, projection_dim=_TEXT_HIDDEN))
    config = PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids("<image>"),
        projection_dim=_TEXT_HIDDEN,
        hidden_size=_TEXT_HIDDEN,
        vocab_size=len(tokenizer),
        tie_word_embeddings=False,
    )
    return PaliGemmaForConditionalGeneration(config), processor


_BUILDERS: dict[str, Callable[[str, PreTrainedTokenizerFast], tuple[PreTrainedModel, Any]]] = {
    "qwen2_vl": _build_qwen,
    "qwen2_5_vl": _build_qwen,
    "llava": _build_llava,
    "llava_next": _build_llava,
    "idefics3": _build_idefics,
    "smolvlm": _build_idefics,
    "paligemma": _build_paligemma,
}


def build_tiny_vlm(
    arch: str,
    folder: Path,
    *,
    words: Sequence[str] = (),
    rig: Rig | None = None,
    seed: int = 0,
) -> Path:
    """Save a tiny random-weight model of ``arch`` (model + processor) into ``folder``.

    ``words`` (class names, say) are trained into the tokenizer so each is one token, like in a
    real vocabulary; a rig's words are added automatically. Seeding happens here so the weights
    do not depend on which test ran first. Returns ``folder`` for use with ``from_pretrained``.
    """
    import torch

    if arch not in _BUILDERS:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}.")
    if rig is not None and rig.kind not in RIGGABLE[arch]:
        raise NotImplementedError(f"Rig kind {rig.kind!r} is not supported for {arch!r} (see RIGGABLE).")
    family = _FAMILIES[arch]
    all_words = [w for phrase in words for w in str(phrase).split()] + (rig.words() if rig else [])
    torch.manual_seed(seed)
    tokenizer = _train_tokenizer(family, all_words)
    model, processor = _BUILDERS[arch](arch, tokenizer)
    model.eval()
    pad_id = tokenizer.convert_tokens_to_ids(family.pad)
    eos_id = tokenizer.convert_tokens_to_ids(family.eos)
    model.generation_config.pad_token_id = pad_id
    model.generation_config.eos_token_id = eos_id
    if family.bos is not None:
        model.generation_config.bos_token_id = tokenizer.convert_tokens_to_ids(family.bos)
    if rig is not None:
        with torch.no_grad():
            _apply_rig(model, arch, tokenizer, rig, eos_id)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _single_token(tokenizer: PreTrainedTokenizerFast, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def _answer_tokens(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Tokens a rigged model emits for ``text``: without a leading space, as a model answering
    right after ``Assistant:`` or a newline would, so that decoding gives back ``text``."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise ValueError(f"Rig answer {text!r} encodes to no tokens.")
    return ids


def _set_norm_gain(norm: torch.nn.Module, gains: torch.Tensor) -> None:
    """Set an RMSNorm's effective per-dimension gain, whether it multiplies by ``weight``
    (Llama, Qwen) or by ``1 + weight`` (Gemma); probing the module avoids a list of class names."""
    import torch

    weight = norm.weight
    weight.zero_()
    probe = norm(torch.ones(1, weight.shape[0], dtype=weight.dtype))
    offset = 1.0 if probe.abs().max().item() > 0.5 else 0.0
    weight.copy_(gains.to(weight.dtype) - offset)


def _apply_rig(
    model: PreTrainedModel, arch: str, tokenizer: PreTrainedTokenizerFast, rig: Rig, eos_id: int
) -> None:
    """Edit weights so the real forward pass computes the rig's answer.

    The residual stream gets a few dedicated dimensions: ``CONST`` (1 in every token embedding),
    ``TRIGGER`` (1 only in the trigger word's embeddings), ``FLAG`` (written by attention) and one
    ``STATE`` dimension per answer token (1 only in that token's embedding). Every attention output
    and MLP output projection is zeroed, so each position's residual is just its own embedding —
    except, for ``yes_if``, layer 0, whose query/key projections are zeroed (uniform attention over
    all visible positions) and whose value/output pass ``TRIGGER`` into ``FLAG``: the last position
    sees ``FLAG > 0`` iff the trigger occurred anywhere before it. Image features are zeroed on
    these dimensions so no image can disturb them. The final norm keeps only CONST, FLAG and the
    STATE dimensions, and ``lm_head`` reads them: with no STATE set it starts the answer (``no``
    by default, ``yes`` once FLAG outweighs a fixed margin); after an answer token it emits the
    next one, and eos after the last. Norms are scale-invariant, so only ratios matter.
    """
    import torch

    text_config = model.config.get_text_config()
    hidden = text_config.hidden_size
    embed = model.get_input_embeddings().weight
    lm_head = model.get_output_embeddings().weight
    if embed.data_ptr() == lm_head.data_ptr():
        raise NotImplementedError(f"{arch}: rigging needs untied input/output embeddings.")

    if rig.answer is not None:
        default, triggered = _answer_tokens(tokenizer, rig.answer), []
        trigger_ids: list[int] = []
    else:
        default, triggered = _answer_tokens(tokenizer, rig.no), _answer_tokens(tokenizer, rig.yes)
        # "cat" opening a sentence and " cat" inside one are different tokens; both trigger.
        variants = (_single_token(tokenizer, rig.yes_if or ""), _single_token(tokenizer, f" {rig.yes_if}"))
        trigger_ids = sorted({t for t in variants if t is not None})
        if not trigger_ids:
            raise ValueError(f"Rig trigger {rig.yes_if!r} is not a single token; pass it in words=.")
    answer_tokens = default + triggered
    if len(set(answer_tokens)) != len(answer_tokens) or set(answer_tokens) & set(trigger_ids):
        raise ValueError(f"{rig}: answer and trigger tokens must all be distinct for the rig to be unambiguous.")

    const, trigger, flag = 0, 1, 2
    state = {token: 3 + i for i, token in enumerate(answer_tokens)}
    rig_dims = [const, trigger, flag, *state.values()]
    if max(rig_dims) >= hidden:
        raise ValueError(f"{rig}: too many answer tokens for a hidden size of {hidden}.")

    embed[:, rig_dims] = 0.0
    embed[:, const] = 1.0
    embed[trigger_ids, trigger] = 1.0
    for token, dim in state.items():
        embed[token, dim] = 1.0

    for name in _IMAGE_FEATURE_WRITERS[arch]:
        writer = model.get_submodule(name)
        writer.weight[rig_dims, :] = 0.0
        if writer.bias is not None:
            writer.bias[rig_dims] = 0.0
    newline = getattr(model.model, "image_newline", None)
    if newline is not None:
        newline[rig_dims] = 0.0

    language_model = model.get_decoder()
    layers = language_model.layers
    for layer in layers:
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
        for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
            if proj.bias is not None:
                proj.bias.zero_()

    if trigger_ids:
        attn = layers[0].self_attn
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight.zero_()
            if proj.bias is not None:
                proj.bias.zero_()
        # Value channel 0 belongs to KV head 0, which query head 0 reads; output channel 0 is
        # query head 0's first dimension.
        attn.v_proj.weight[0, trigger] = 1.0
        attn.o_proj.weight[flag, 0] = 10.0
        gains = torch.zeros(hidden)
        gains[[const, trigger]] = 1.0
        _set_norm_gain(layers[0].input_layernorm, gains)

    gains = torch.zeros(hidden)
    gains[[const, flag, *state.values()]] = 1.0
    _set_norm_gain(language_model.norm, gains)

    # Margins: starting the default answer scores 1, the triggered one 0.5 + 100*FLAG (FLAG is at
    # least ~5/len(prompt) when the trigger occurred, exactly 0 otherwise); a STATE dimension
    # (bounded FLAG ~ <60) shifts 1e5 onto the next token and away from both starts.
    big = 1e5
    lm_head.zero_()
    lm_head[default[0], const] = 1.0
    if triggered:
        lm_head[triggered[0], const] = 0.5
        lm_head[triggered[0], flag] = 100.0
    for sequence in (default, triggered):
        for token, following in zip(sequence, [*sequence[1:], eos_id]):
            lm_head[following, state[token]] += big
            lm_head[default[0], state[token]] -= big
            if triggered:
                lm_head[triggered[0], state[token]] -= big
    bias = getattr(model.get_output_embeddings(), "bias", None)
    if bias is not None:
        bias.zero_()


def make_rgb_images(n: int, size: tuple[int, int] = (48, 40), seed: int = 0) -> list[Image.Image]:
    """Distinct, deterministic RGB images: a seeded noise field plus a per-image colour, so that
    images differ even for tiny ``size`` and tests never depend on files on disk."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    images = []
    for i in range(n):
        base = np.array([(37 * i) % 256, (91 * i + 50) % 256, (53 * i + 120) % 256], dtype=np.int16)
        noise = rng.integers(-40, 41, size=(height, width, 3), dtype=np.int16)
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels, mode="RGB"))
    return images
