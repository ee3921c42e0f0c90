"""The transformers VLM backend loads hub-style folders of every served architecture, answers
the same alone as in a padded batch, and records what makes its answers reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

from vlm_fixtures import CLASSES, arch_params, backend, model_folder, strategy_at  # noqa: E402

from classbench.batching import answers_at  # noqa: E402
from classbench.datasets import Sample  # noqa: E402
from classbench.errors import UserError  # noqa: E402
from classbench.models import load_model  # noqa: E402
from classbench.models.base import GenerationRequest  # noqa: E402
from classbench.strategies.binary import Binary  # noqa: E402
from tinymodels.tiny_models import make_rgb_images  # noqa: E402


def _images(n: int) -> list:
    sizes = [(64, 48), (40, 56), (90, 30), (33, 33)]
    return [image.resize(sizes[i % len(sizes)]) for i, image in enumerate(make_rgb_images(n, seed=3))]


@pytest.mark.parametrize("arch", arch_params())
def test_every_architecture_loads_and_answers_alike_at_batch_sizes_1_and_8(arch: str) -> None:
    model = backend(arch)
    assert model.settings["model_type"] == arch
    assert model.revision.startswith("sha256:")
    assert model.settings["image_processor"], "the processor's image settings are provenance"
    images = _images(2)
    samples = [(Sample(f"img{i}.png", CLASSES[i]), image) for i, image in enumerate(images)]
    make = strategy_at("closed-set", model, CLASSES, shuffles=2, max_new_tokens=3)
    one, eight = (answers_at(make, samples, size) for size in (1, 8))
    assert one == eight
    assert sum(key != "(prediction)" for _, key in one) == 2 * len(samples)


def test_binary_rounds_answer_alike_at_batch_sizes_1_and_8() -> None:
    samples = [(Sample(f"img{i}.png", CLASSES[i]), image) for i, image in enumerate(_images(3))]
    make = strategy_at(Binary, backend("qwen2_vl"), CLASSES, max_new_tokens=3)
    one, eight = (answers_at(make, samples, size) for size in (1, 8))
    assert one == eight


def test_generation_counts_tokens_and_stops_within_the_budget() -> None:
    model = backend("llava")
    requests = [GenerationRequest(image, prompt, max_new_tokens=3)
                for image, prompt in zip(_images(2), ["Is the cat in this photo?", "Choose one from cat, dog."])]
    generations = model.generate(requests)
    assert [g.error for g in generations] == [None, None]
    assert all(0 < g.tokens_in and 0 <= g.tokens_out <= 3 and g.latency_s > 0 for g in generations)
    assert generations[0].tokens_in < generations[1].tokens_in


def test_registry_loads_hf_folders_and_the_revision_follows_the_weights(tmp_path: Path) -> None:
    loaded = load_model(f"hf:{model_folder('llava')}", {"dtype": "fp32"}, "cpu")
    assert loaded.model_id == f"hf:{model_folder('llava')}"
    assert loaded.revision == backend("llava").revision
    assert loaded.settings["dtype"] == "float32"
    assert "generate" in loaded.capabilities
    assert backend("qwen2_vl").revision != loaded.revision


def test_max_pixels_bounds_qwen_in_its_processor_and_others_before_it() -> None:
    image = _images(1)[0].resize((300, 200))
    request = [GenerationRequest(image, "Is the cat in this photo?", 2)]
    qwen = backend("qwen2_vl", min_pixels=28 * 28, max_pixels=28 * 28 * 2)
    assert qwen.processor.image_processor.size["longest_edge"] == 28 * 28 * 2
    assert qwen.settings["image_processor"]["size"]["longest_edge"] == 28 * 28 * 2
    assert qwen.generate(request)[0].tokens_in < backend("qwen2_vl").generate(request)[0].tokens_in
    llava = backend("llava", max_pixels=1000)
    bounded = llava.bounded(image)
    assert bounded.size[0] * bounded.size[1] <= 1000
    assert abs(bounded.size[0] / bounded.size[1] - 1.5) < 0.1
    assert llava.generate(request)[0].error is None


@pytest.mark.parametrize("arch", ["llava", "qwen2_vl"])
def test_half_precision_loads_and_answers(arch: str) -> None:
    model = backend(arch, dtype="bf16")
    assert model.settings["dtype"] == "bfloat16"
    generation = model.generate([GenerationRequest(_images(1)[0], "Is the cat in this photo?", 2)])[0]
    assert generation.error is None and generation.tokens_out is not None


def test_paligemma_is_served_without_a_chat_template() -> None:
    model = backend("paligemma")
    assert model.settings["adapter"] == "paligemma"
    assert model.settings["chat_template_sha256"] is None
    assert model.generate([GenerationRequest(_images(1)[0], "Is the cat in this photo?", 2)])[0].error is None


@pytest.mark.parametrize(("options", "message"), [
    ({"dtype": "fp8"}, "bad value for .dtype.*auto"),
])
def test_bad_options_are_user_errors(options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_model(f"hf:{model_folder('llava')}", options, "cpu")


def test_a_missing_folder_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config.json"):
        load_model(f"hf:{tmp_path / 'nothing-here'}", {}, "cpu")
