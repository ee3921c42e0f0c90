"""Tiny random-weight models of the published benchmark's native-transformers checkpoints.

The published table has Llama-3.2-11B-Vision-Instruct (`mllama`, cross-attention to the image) and
two LLaVA-NeXT checkpoints whose text models and prompts differ from the Vicuna-style LLaVA of
`tiny_models`: llava-v1.6-mistral-7b-hf (Mistral, `[INST] … [/INST]`, `<s>` added by the
tokenizer) and llama3-llava-next-8b-hf (Llama 3, header template, `<|begin_of_text|>` added by the
tokenizer). What a test must catch lives exactly there — the chat template, who adds the BOS token,
the cross-attention cache — so each builder copies the checkpoint's published chat template and
its tokenizer's BOS rule, at toy sizes, and saves the folder like a hub checkpoint.

A random `mllama` ignores its image: its cross-attention gates start at zero (tanh(0) = 0). The
builder opens every gate, so the image really flows through the cross-attention layers and their
cache. Its rig (`_rig_mllama`) keeps them open: it reuses `tiny_models`' rig on the self-attention
layers and only clears the rig's own residual dimensions in what the cross-attention layers write,
so a rigged mllama answers exactly while still attending to the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinymodels import tiny_models
from tinymodels.tiny_models import Rig, _Family, _small_vision, _text_config, _train_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

PUBLISHED_ARCHITECTURES: tuple[str, ...] = ("mllama", "llava_next_mistral", "llava_next_llama3")
"""Builder names; the saved models' `model_type` is `mllama` or `llava_next`."""

MODEL_TYPE = {"mllama": "mllama", "llava_next_mistral": "llava_next", "llava_next_llama3": "llava_next"}

# meta-llama/Llama-3.2-11B-Vision-Instruct's chat template, as published (tokenizer_config.json).
LLAMA_32_VISION_TEMPLATE = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- Find out if there are any images #}
{% set image_ns = namespace(has_images=false) %}      
{%- for message in messages %}
    {%- for content in message['content'] %}
        {%- if content['type'] == 'image' %}
            {%- set image_ns.has_images = true %}
        {%- endif %}
    {%- endfor %}
{%- endfor %}

{#- Error out if there are images and system message #}
{%- if image_ns.has_images and not system_message == "" %}
    {{- raise_exception("Prompting with images is incompatible with system messages.") }}
{%- endif %}

{#- System message if there are no images #}
{%- if not image_ns.has_images %}
    {{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
    {%- if tools is not none %}
        {{- "Environment: ipython\n" }}
    {%- endif %}
    {{- "Cutting Knowledge Date: December 2023\n" }}
    {{- "Today Date: " + date_string + "\n\n" }}
    {%- if tools is not none and not tools_in_user_message %}
        {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
        {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
        {{- "Do not use variables.\n\n" }}
        {%- for t in tools %}
            {{- t | tojson(indent=4) }}
            {{- "\n\n" }}
        {%- endfor %}
    {%- endif %}
    {{- system_message }}
    {{- "<|eot_id|>" }}
{%- endif %}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}
        {%- if message['content'] is string %}
            {{- message['content'] }}
        {%- else %}
            {%- for content in message['content'] %}
                {%- if content['type'] == 'image' %}
                    {{- '<|image|>' }}
                {%- elif content['type'] == 'text' %}
                    {{- content['text'] }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# llava-hf/llava-v1.6-mistral-7b-hf's chat template, as published (chat_template.json).
LLAVA_NEXT_MISTRAL_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> '}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# llava-hf/llama3-llava-next-8b-hf's chat template, as published (chat_template.json).
LLAVA_NEXT_LLAMA3_TEMPLATE = (
    "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}{# Render all text next #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] + '<|eot_id|>' }}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

_LLAMA3_SPECIAL = ("<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>")

# Llama 3's tokenizer.json prepends <|begin_of_text|> to every encoding (add_special_tokens=True),
# and Mistral's (LlamaTokenizerFast, add_bos_token) prepends <s>: `add_bos` reproduces both.
_FAMILIES: dict[str, _Family] = {
    "mllama": _Family(special_tokens=(*_LLAMA3_SPECIAL, "<|image|>"), pad="<|finetune_right_pad_id|>",
                      eos="<|eot_id|>", bos="<|begin_of_text|>", add_bos=True,
                      chat_template=LLAMA_32_VISION_TEMPLATE),
    "llava_next_llama3": _Family(special_tokens=(*_LLAMA3_SPECIAL, "<image>", "<pad>"), pad="<pad>",
                                 eos="<|eot_id|>", bos="<|begin_of_text|>", add_bos=True,
                                 chat_template=LLAVA_NEXT_LLAMA3_TEMPLATE),
    "llava_next_mistral": _Family(special_tokens=("<unk>", "<s>", "</s>", "<image>", "<pad>"), pad="<pad>",
                                  eos="</s>", bos="<s>", add_bos=True, chat_template=LLAVA_NEXT_MISTRAL_TEMPLATE),
}

_EXTRA_STOPS = {"mllama": ("<|end_of_text|>", "<|eom_id|>"), "llava_next_llama3": ("<|end_of_text|>",)}
"""Llama 3 checkpoints stop on several tokens (their generation_config lists them); the first is `eos`."""

_OPEN_GATE = 0.5
"""tanh(0.5) ≈ 0.46: every mllama gate (cross-attention, tile and position embeddings) lets through."""


def _build_mllama(tokenizer: PreTrainedTokenizerFast) -> tuple[PreTrainedModel, Any]:
    import torch
    from transformers import (MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor,
                              MllamaProcessor, MllamaTextConfig, MllamaVisionConfig)

    ids = tokenizer.convert_tokens_to_ids
    # Layer 0 self-attends (a rig's trigger detector needs it), layer 1 cross-attends to the image.
    text = MllamaTextConfig(**{**_text_config(len(tokenizer), ids("<|finetune_right_pad_id|>"), ids("<|eot_id|>"),
                                              ids("<|begin_of_text|>")), "num_hidden_layers": 3},
                            cross_attention_layers=[1])
    tile = 28
    vision = MllamaVisionConfig(**_small_vision(image_size=tile, patch_size=14), num_global_layers=1,
                                intermediate_layers_indices=[0], vision_output_dim=2 * 32, max_num_tiles=4)
    model = MllamaForConditionalGeneration(MllamaConfig(vision_config=vision, text_config=text,
                                                        image_token_index=ids("<|image|>")))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("gate"):
                parameter.fill_(_OPEN_GATE)
    # Up to 4 tiles of 28px: a wide or tall image gets fewer tiles than the most, so padded tiles
    # (masked by cross_attention_mask) are part of every test batch of mixed shapes.
    image_processor = MllamaImageProcessor(size={"height": tile, "width": tile}, max_image_tiles=4)
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=tokenizer.chat_template)
    return model, processor


def _build_llava_next(arch: str, tokenizer: PreTrainedTokenizerFast) -> tuple[PreTrainedModel, Any]:
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessor, LlavaNextProcessor, MistralConfig)

    family = _FAMILIES[arch]
    ids = tokenizer.convert_tokens_to_ids
    settings = _text_config(len(tokenizer), ids(family.pad), ids(family.eos), ids(family.bos))
    text = MistralConfig(**settings) if arch == "llava_next_mistral" else LlamaConfig(**settings)
    vision = CLIPVisionConfig(**_small_vision(image_size=28, patch_size=14, projection_dim=32))
    pinpoints = [[28, 28], [28, 56], [56, 28]]
    model = LlavaNextForConditionalGeneration(LlavaNextConfig(
        vision_config=vision, text_config=text, image_token_index=ids("<image>"), image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default", vision_feature_layer=-1, tie_word_embeddings=False))
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                              image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                   chat_template=tokenizer.chat_template, patch_size=14,
                                   num_additional_image_tokens=1, vision_feature_select_strategy="default")
    return model, processor


_BUILDERS: dict[str, Callable[[PreTrainedTokenizerFast], tuple[PreTrainedModel, Any]]] = {
    "mllama": _build_mllama,
    "llava_next_mistral": lambda tokenizer: _build_llava_next("llava_next_mistral", tokenizer),
    "llava_next_llama3": lambda tokenizer: _build_llava_next("llava_next_llama3", tokenizer),
}


@contextmanager
def _self_attention_only(model: PreTrainedModel) -> Iterator[None]:
    """Show `tiny_models._apply_rig` only the self-attention layers of the text model (the layers stay
    the same objects, so its edits land in the model), and no image-feature writer: mllama's image
    reaches the residual stream only through the cross-attention layers, which `_rig_mllama` handles."""
    import torch

    decoder = model.get_decoder()
    layers = decoder.layers
    decoder.layers = torch.nn.ModuleList(
        [layer for index, layer in enumerate(layers) if index not in decoder.cross_attention_layers])
    tiny_models._IMAGE_FEATURE_WRITERS.setdefault("mllama", ())
    try:
        yield
    finally:
        decoder.layers = layers


def _rig_mllama(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, rig: Rig, eos_id: int) -> None:
    """The rig of `tiny_models._apply_rig` with the cross-attention layers left working: they keep
    attending to the image and writing into the residual stream, except into the rig's dimensions
    (CONST, TRIGGER, FLAG and one STATE per answer token, the first dimensions), whose rows are cleared
    in the layers' attention and MLP output projections. The final norm keeps only those dimensions,
    so the image changes the norm's scale but never which token wins."""
    answers = tiny_models._answer_tokens(tokenizer, rig.answer) if rig.answer is not None else [
        *tiny_models._answer_tokens(tokenizer, rig.no), *tiny_models._answer_tokens(tokenizer, rig.yes)]
    rig_dims = slice(0, 3 + len(answers))
    decoder = model.get_decoder()
    for index in decoder.cross_attention_layers:
        layer = decoder.layers[index]
        layer.cross_attn.o_proj.weight[rig_dims, :] = 0.0
        layer.mlp.down_proj.weight[rig_dims, :] = 0.0
    with _self_attention_only(model):
        tiny_models._apply_rig(model, "mllama", tokenizer, rig, eos_id)


def build_published_vlm(arch: str, folder: Path, *, words: Sequence[str] = (), rig: Rig | None = None,
                        seed: int = 0) -> Path:
    """Save a tiny random-weight model of `arch` (one of PUBLISHED_ARCHITECTURES) into `folder`, as
    `tiny_models.build_tiny_vlm` does; `rig` makes it answer deterministically."""
    import torch

    if arch not in _BUILDERS:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {', '.join(PUBLISHED_ARCHITECTURES)}.")
    family = _FAMILIES[arch]
    all_words = [w for phrase in words for w in str(phrase).split()] + (rig.words() if rig else [])
    torch.manual_seed(seed)
    tokenizer = _train_tokenizer(family, all_words)
    model, processor = _BUILDERS[arch](tokenizer)
    model.eval()
    ids = tokenizer.convert_tokens_to_ids
    eos_id = ids(family.eos)
    model.generation_config.pad_token_id = ids(family.pad)
    stops = [eos_id, *(ids(token) for token in _EXTRA_STOPS.get(arch, ()))]
    model.generation_config.eos_token_id = stops if len(stops) > 1 else eos_id
    model.generation_config.bos_token_id = ids(family.bos)
    if rig is not None:
        with torch.no_grad():
            if arch == "mllama":
                _rig_mllama(model, tokenizer, rig, eos_id)
            else:
                tiny_models._apply_rig(model, "llava_next", tokenizer, rig, eos_id)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
