"""The tiny VLM fixtures must load and generate exactly like hub checkpoints, and rigged ones
must answer what the rig promises, or every test built on them tests nothing."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402
from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: E402

from tinymodels.tiny_models import (  # noqa: E402
    ARCHITECTURES,
    RIGGABLE,
    Rig,
    build_tiny_vlm,
    make_rgb_images,
)

CLASSES = ("cat", "dog", "car", "teddy bear")
CLOSED_SET = (
    "Question: Answer this question in a single word: What type of object is in this photo? "
    "Choose one from {classes}. Answer:"
)
BINARY = "Answer the question in a single word: yes or no. Is the {name} in this photo?"
MAX_NEW_TOKENS = 4

EXPECTED_PROCESSOR = {
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "llava": "LlavaProcessor",
    "llava_next": "LlavaNextProcessor",
    "idefics3": "Idefics3Processor",
    "smolvlm": "SmolVLMProcessor",
    "paligemma": "PaliGemmaProcessor",
}


def _arch_params() -> list[Any]:
    """SmolVLM's real processor imports num2words; without it that architecture is skipped,
    not failed, because the fixture cannot exist rather than being wrong."""
    missing = importlib.util.find_spec("num2words") is None
    return [
        pytest.param(
            arch,
            marks=pytest.mark.skipif(missing and arch == "smolvlm", reason="SmolVLMProcessor needs num2words"),
        )
        for arch in ARCHITECTURES
    ]


Loaded = tuple[Any, Any]


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Rig | None], Loaded]:
    """Build and load each (architecture, rig) once per session; loading goes through the Auto
    classes so the tests exercise the path a user's hub model takes."""
    cache: dict[tuple[str, Rig | None], Loaded] = {}

    def get(arch: str, rig: Rig | None = None) -> Loaded:
        key = (arch, rig)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"{arch}-{rig.kind if rig else 'random'}")
            build_tiny_vlm(arch, folder, words=CLASSES, rig=rig)
            processor = AutoProcessor.from_pretrained(folder)
            model = AutoModelForImageTextToText.from_pretrained(folder).eval()
            cache[key] = (processor, model)
        return cache[key]

    return get


def prompt_for(processor: Any, arch: str, question: str) -> str:
    """PaliGemma has no chat template: its prompt format is task-prefixed plain text."""
    if arch == "paligemma":
        return f"<image>answer en {question}"
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def generate(processor: Any, model: Any, arch: str, questions: list[str], seed: int = 0) -> tuple[Any, Any]:
    images = make_rgb_images(len(questions), seed=seed)
    texts = [prompt_for(processor, arch, q) for q in questions]
    inputs = processor(images=[[image] for image in images], text=texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    return inputs, output


def answers(processor: Any, model: Any, arch: str, questions: list[str], seed: int = 0) -> list[str]:
    inputs, output = generate(processor, model, arch, questions, seed)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [a.strip() for a in processor.batch_decode(new_tokens, skip_special_tokens=True)]


def closed_set(classes: tuple[str, ...] = CLASSES) -> str:
    return CLOSED_SET.format(classes=", ".join(classes))


def binary(name: str) -> str:
    return BINARY.format(name=name)


@pytest.mark.parametrize("arch", _arch_params())
def test_saved_folder_loads_with_real_processor_and_left_padding(
    arch: str, tiny_vlm: Callable[[str, Rig | None], Loaded]
) -> None:
    processor, model = tiny_vlm(arch, None)
    assert type(processor).__name__ == EXPECTED_PROCESSOR[arch]
    assert model.config.model_type == arch
    assert processor.tokenizer.padding_side == "left"
    assert model.generation_config.pad_token_id is not None
    assert model.generation_config.eos_token_id is not None
    assert 100_000 < sum(p.numel() for p in model.parameters()) < 1_000_000
    for word in ("cat", " cat", "yes", "no"):
        assert len(processor.tokenizer.encode(word, add_special_tokens=False)) == 1, word


@pytest.mark.parametrize("arch", _arch_params())
def test_random_model_generates_single_and_left_padded_batch(
    arch: str, tiny_vlm: Callable[[str, Rig | None], Loaded]
) -> None:
    processor, model = tiny_vlm(arch, None)

    inputs, output = generate(processor, model, arch, [closed_set()])
    prompt_len = inputs["input_ids"].shape[1]
    assert output.shape[0] == 1
    assert prompt_len < output.shape[1] <= prompt_len + MAX_NEW_TOKENS
    assert torch.equal(output[:, :prompt_len], inputs["input_ids"])

    questions = [binary("cat"), closed_set(), binary("teddy bear") + " Look carefully at the photo."]
    inputs, output = generate(processor, model, arch, questions)
    mask = inputs["attention_mask"]
    prompt_len = inputs["input_ids"].shape[1]
    assert output.shape[0] == 3
    assert prompt_len < output.shape[1] <= prompt_len + MAX_NEW_TOKENS
    assert bool((mask[:, -1] == 1).all()), "padding must be on the left for batched generation"
    assert bool((mask[0] == 0).any()), "the shortest prompt should have been padded"
    assert len(processor.batch_decode(output[:, prompt_len:], skip_special_tokens=True)) == 3


@pytest.mark.parametrize("arch", _arch_params())
def test_constant_rig_answers_its_word_then_stops(arch: str, tiny_vlm: Callable[[str, Rig | None], Loaded]) -> None:
    processor, model = tiny_vlm(arch, Rig(answer="cat"))
    assert answers(processor, model, arch, [closed_set()]) == ["cat"]
    batch = [closed_set(), binary("dog"), closed_set(("dog", "cat", "car"))]
    assert answers(processor, model, arch, batch, seed=3) == ["cat"] * 3


@pytest.mark.parametrize("arch", _arch_params())
def test_yes_if_rig_answers_yes_only_when_the_word_is_in_the_prompt(
    arch: str, tiny_vlm: Callable[[str, Rig | None], Loaded]
) -> None:
    processor, model = tiny_vlm(arch, Rig(yes_if="cat"))
    assert answers(processor, model, arch, [binary("cat")]) == ["yes"]
    assert answers(processor, model, arch, [binary("dog")]) == ["no"]
    batch = [binary("dog"), binary("cat"), binary("teddy bear")]
    assert answers(processor, model, arch, batch, seed=1) == ["no", "yes", "no"]
    # The trigger at the start of a sentence is a different token from " cat".
    assert answers(processor, model, arch, ["cat?", "dog?"], seed=2) == ["yes", "no"]


@pytest.mark.parametrize("arch", _arch_params())
def test_always_no_is_a_constant_rig(arch: str, tiny_vlm: Callable[[str, Rig | None], Loaded]) -> None:
    processor, model = tiny_vlm(arch, Rig(answer="no"))
    assert answers(processor, model, arch, [binary("cat"), binary("teddy bear")]) == ["no", "no"]


def test_multi_token_answer_is_emitted_in_order(tmp_path: Path) -> None:
    folder = build_tiny_vlm("llava", tmp_path, words=CLASSES, rig=Rig(answer="teddy bear"))
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert answers(processor, model, "llava", [closed_set(), binary("car")]) == ["teddy bear"] * 2


def test_same_seed_gives_same_weights_and_other_seed_differs(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    def weights(seed: int, name: str) -> dict[str, torch.Tensor]:
        folder = build_tiny_vlm("llava", tmp_path / name, seed=seed)
        return load_file(folder / "model.safetensors")

    first, again, other = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_every_architecture_declares_its_rigs() -> None:
    assert set(RIGGABLE) == set(ARCHITECTURES)
    assert all(kinds <= {"answer", "yes_if"} for kinds in RIGGABLE.values())


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"answer": "cat", "yes_if": "cat"}, {"yes_if": "teddy bear"}, {"yes_if": " "}],
)
def test_rig_rejects_ambiguous_requests(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Rig(**kwargs)


def test_unknown_architecture_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="qwen2_vl"):
        build_tiny_vlm("gpt-5", tmp_path)


def test_rig_whose_answer_and_trigger_share_a_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distinct"):
        build_tiny_vlm("llava", tmp_path, rig=Rig(yes_if="yes"))


def test_images_are_deterministic_distinct_and_sized() -> None:
    images = make_rgb_images(4, size=(48, 40), seed=5)
    again = make_rgb_images(4, size=(48, 40), seed=5)
    assert [im.size for im in images] == [(48, 40)] * 4
    assert all(im.mode == "RGB" for im in images)
    assert [im.tobytes() for im in images] == [im.tobytes() for im in again]
    assert len({im.tobytes() for im in images}) == 4
    assert make_rgb_images(1, seed=6)[0].tobytes() != images[0].tobytes()
