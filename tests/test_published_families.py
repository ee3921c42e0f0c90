"""Llama-3.2-Vision and both LLaVA-NeXT checkpoints of the published table, as published (their chat
templates, their tokenizers' BOS rule), run correctly through `--model hf:DIR`: one BOS token per
prompt, closed-set and binary end to end through the CLI with the same stored answers at batch
sizes 1 and 8, greedy decoding with the KV cache equal to a loop of full forwards, shared-prefix
answers and scores equal to plain ones (mllama's cross-attention mask), and rigged models that
answer exactly what the rig says. Tiny random weights test plumbing, never accuracy."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402

from in_process import classbench  # noqa: E402
from tinymodels.full_forward import score_full_forward  # noqa: E402
from tinymodels.tiny_models import Rig, make_rgb_images  # noqa: E402
from tinymodels.tiny_published import MODEL_TYPE, PUBLISHED_ARCHITECTURES, build_published_vlm  # noqa: E402
from vlm_fixtures import read_metrics, read_predictions  # noqa: E402

from classbench.models.base import GenerationRequest, ScoreRequest  # noqa: E402
from classbench.models import load_model  # noqa: E402

CLASSES = ("cat", "dog", "car", "clutter")
FOLDERS = ("001.cat", "002.dog", "003.car", "004.clutter")
SIZES = ((64, 48), (40, 90), (90, 30), (33, 33))
"""Mixed shapes: batches are padded, and mllama's images fill different numbers of tiles."""
PER_CLASS = 2


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("published")
    folders: dict[tuple[str, Rig | None], Path] = {}
    backends: dict[tuple[str, Rig | None], Any] = {}

    def folder(arch: str, rig: Rig | None = None) -> Path:
        if (arch, rig) not in folders:
            name = f"{arch}-{rig.kind}-{rig.answer or rig.yes_if}" if rig else f"{arch}-random"
            folders[arch, rig] = build_published_vlm(arch, root / name, words=CLASSES, rig=rig)
        return folders[arch, rig]

    def backend(arch: str, rig: Rig | None = None) -> Any:
        if (arch, rig) not in backends:
            backends[arch, rig] = load_model(f"hf:{folder(arch, rig)}", {}, "cpu")
        return backends[arch, rig]

    tree = root / "tree"
    for index, image in enumerate(make_rgb_images(PER_CLASS * len(FOLDERS), seed=5)):
        target = tree / FOLDERS[index % len(FOLDERS)]
        target.mkdir(parents=True, exist_ok=True)
        image.resize(SIZES[index % len(SIZES)]).save(target / f"img{index}.png")
    return folder, backend, tree


def stored_answers(out: Path) -> list[tuple]:
    db = sqlite3.connect(out / "run.sqlite")
    try:
        return list(db.execute("SELECT image, key, answer, label, error FROM questions ORDER BY image, key"))
    finally:
        db.close()


def _images(n: int) -> list:
    return [image.resize(SIZES[i % len(SIZES)]) for i, image in enumerate(make_rgb_images(n, seed=3))]


@pytest.mark.parametrize("arch", PUBLISHED_ARCHITECTURES)
def test_the_prompt_gets_exactly_one_bos_token(arch: str, built: Any) -> None:
    _, backend, _ = built
    model = backend(arch)
    tokenizer = model.tokenizer
    assert model.settings["model_type"] == MODEL_TYPE[arch]
    assert tokenizer("cat").input_ids[0] == tokenizer.bos_token_id, "the tokenizer adds a BOS of its own"
    inputs = model.prepare(_images(3), ["Is the cat in this photo?", "Choose one from cat, dog.", "Answer:"])
    for ids, mask in zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist()):
        real = [token for token, kept in zip(ids, mask) if kept]
        assert real.count(tokenizer.bos_token_id) == 1 and real[0] == tokenizer.bos_token_id


@pytest.mark.parametrize(("arch", "start"), [
    ("mllama", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>Is it?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    ("llava_next_mistral", "[INST] <image>\nIs it? [/INST]"),
    ("llava_next_llama3", "<|start_header_id|>user<|end_header_id|>\n\n<image>\nIs it?<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n"),
])
def test_the_rendered_prompt_is_the_published_template(arch: str, start: str, built: Any) -> None:
    _, backend, _ = built
    model = backend(arch)
    assert model.adapter.prompt(model.processor, "Is it?") == start


@pytest.mark.parametrize("arch", PUBLISHED_ARCHITECTURES)
def test_closed_set_and_binary_through_the_cli_answer_alike_at_batch_sizes_1_and_8(
        arch: str, built: Any, tmp_path: Path) -> None:
    folder, _, tree = built
    for strategy, extra in (("closed-set", ["--shuffles", "2"]), ("binary", [])):
        outs = []
        for batch_size in ("1", "8"):
            out = tmp_path / f"{strategy}-{batch_size}"
            code = classbench("run", "--dataset", str(tree), "--model", f"hf:{folder(arch)}", "--strategy", strategy,
                              "--background", "clutter", "--device", "cpu", "--batch-size", batch_size,
                              "--max-new-tokens", "4", "--no-progress", "--out", str(out), *extra)
            assert code == 0
            metrics = read_metrics(out)
            assert metrics["n_images"] == PER_CLASS * len(FOLDERS) and metrics["n_failed"] == 0
            outs.append(out)
        one, eight = (stored_answers(out) for out in outs)
        assert one == eight and all(error is None for *_, error in one)
        asked = [key for _, key, *_ in one if key != "(prediction)"]
        n_images = PER_CLASS * len(FOLDERS)
        assert len(asked) == 2 * n_images if strategy == "closed-set" else n_images <= len(asked) <= 3 * n_images


def _greedy_without_cache(model: Any, inputs: dict[str, Any], steps: int) -> list[int]:
    """Greedy decoding as a loop of full forwards, no cache: every step reruns image and prompt.
    Per-token inputs grow with the sequence like `generate` grows them (mask rows repeat the last)."""
    inputs = dict(inputs)
    tokens = []
    for _ in range(steps):
        logits = model(**inputs, use_cache=False).logits[0, -1]
        token = int(logits.argmax())
        tokens.append(token)
        length = inputs["input_ids"].shape[1]
        for key, value in list(inputs.items()):
            if torch.is_tensor(value) and value.dim() >= 2 and value.shape[1] == length:
                follow = torch.tensor([[token]]) if key == "input_ids" else value[:, -1:]
                inputs[key] = torch.cat([value, follow.to(value.dtype)], dim=1)
    return tokens


@pytest.mark.parametrize("arch", PUBLISHED_ARCHITECTURES)
def test_greedy_tokens_with_the_cache_equal_full_forwards_without_it(arch: str, built: Any) -> None:
    from transformers import GenerationConfig

    _, backend, _ = built
    model = backend(arch)
    steps = 6
    never_stop = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=steps, min_new_tokens=0,
                                  eos_token_id=None, pad_token_id=model.tokenizer.pad_token_id)
    for image, prompt in zip(_images(2), ["Is the dog in this photo?", "Choose one from cat, dog, car."]):
        inputs = model.prepare([image], [prompt])
        with torch.inference_mode():
            cached = model.model.generate(**inputs, generation_config=never_stop)[0, inputs["input_ids"].shape[1]:]
            assert cached.tolist() == _greedy_without_cache(model.model, inputs, steps)


@pytest.mark.parametrize("arch", PUBLISHED_ARCHITECTURES)
def test_shared_prefix_answers_and_scores_equal_plain_ones(arch: str, built: Any) -> None:
    """Binary asks over one cached image prefix and likelihood scores candidates over one cached prompt;
    both must equal what the whole prompt computes (mllama: with the image tiles masked as in `generate`)."""
    _, backend, _ = built
    model = backend(arch)
    images = _images(3)
    prompts = [f"Answer yes or no. Is the {name} in this photo?" for name in CLASSES[:3]]
    shared = model.generate_shared([(image, prompts) for image in images], 4)
    plain = [model.generate([GenerationRequest(image, prompt, 4)])[0] for image in images for prompt in prompts]
    assert [g.text for answers in shared for g in answers] == [g.text for g in plain]
    for image in images:
        request = ScoreRequest(image, "Choose one from cat, dog, car. Answer:", list(CLASSES))
        fast, full = model.score([request])[0].logprob, score_full_forward(model, request).logprob
        assert abs(fast - full).max() < 1e-4


@pytest.mark.parametrize("arch", PUBLISHED_ARCHITECTURES)
def test_rigged_models_give_exactly_the_expected_predictions(arch: str, built: Any, tmp_path: Path) -> None:
    folder, _, tree = built
    runs = {"closed-set": (Rig(answer="dog"), "dog"), "binary": (Rig(yes_if="car"), "car")}
    for strategy, (rig, expected) in runs.items():
        out = tmp_path / strategy
        code = classbench("run", "--dataset", str(tree), "--model", f"hf:{folder(arch, rig)}", "--strategy", strategy,
                          "--background", "clutter", "--device", "cpu", "--batch-size", "8",
                          *(["--shuffles", "2"] if strategy == "closed-set" else []), "--no-progress", "--out", str(out))
        assert code == 0
        assert set(read_predictions(out).values()) == {expected}
        assert len(read_predictions(out)) == PER_CLASS * len(FOLDERS)
    # Always no: binary finds no class and answers the background for every image.
    out = tmp_path / "no"
    assert classbench("run", "--dataset", str(tree), "--model", f"hf:{folder(arch, Rig(answer='no'))}",
                      "--strategy", "binary", "--background", "clutter", "--device", "cpu", "--no-progress",
                      "--out", str(out)) == 0
    assert set(read_predictions(out).values()) == {"clutter"}


def test_python_m_classbench_runs_a_tiny_mllama(built: Any, tmp_path: Path) -> None:
    folder, _, tree = built
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "classbench", "run", "--dataset", str(tree), "--model",
                           f"hf:{folder('mllama')}", "--strategy", "closed-set", "--shuffles", "2", "--background",
                           "clutter", "--device", "cpu", "--no-progress", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "hf:" in done.stdout and read_metrics(out)["n_failed"] == 0


def test_a_model_that_fails_on_every_image_exits_non_zero(built: Any, tmp_path: Path) -> None:
    """A LLaVA-NeXT whose processor expands `<image>` to one token fewer than the vision tower gives (a
    processor saved with the wrong setting): the model refuses every image. A small run (under the
    runner's 20-image give-up) records each failure, then must say so and exit non-zero."""
    import json

    folder, _, tree = built
    broken = tmp_path / "broken"
    shutil.copytree(folder("llava_next_mistral"), broken)
    config_path = broken / "processor_config.json"
    config = json.loads(config_path.read_text())
    config["num_additional_image_tokens"] = 0
    config_path.write_text(json.dumps(config))
    out = tmp_path / "out"
    code = classbench("run", "--dataset", str(tree), "--model", f"hf:{broken}", "--strategy", "closed-set",
                      "--device", "cpu", "--no-progress", "--out", str(out))
    assert code == 1
    metrics = read_metrics(out)
    assert metrics["n_images"] == 0 and metrics["n_failed"] == PER_CLASS * len(FOLDERS)
    assert all(failure["error"].startswith("model error: ") for failure in metrics["failures"])
