"""MiniCPM-V, InternVL2 and Phi-3-vision run through `--model hf:DIR --trust-remote-code` from their
published code, on tiny random-weight models: end to end with closed-set and binary, the same at
batch sizes 1 and 8, greedy with a KV cache the same as without, with buffers equal to what the
model's own code computes, and refused when a buffer cannot be made right.

The published code is read from shared/remote-code/ beside the repository (third-party, never in
it); without it these tests are skipped. Everything runs in this process (see tiny_remote's note
on Phi-3-vision's CLIP tower), the CLI through its own `main`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import in_process  # noqa: E402
from tinymodels.tiny_models import Rig, make_rgb_images  # noqa: E402
from tinymodels.tiny_remote import FAMILIES, build_tiny_remote, skip_reason  # noqa: E402

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

import torch  # noqa: E402

from classbench.errors import UserError  # noqa: E402
from classbench.models import load_model  # noqa: E402
from classbench.models.remote import buffers, decode  # noqa: E402
from vlm_fixtures import CLASSES, WORDS, read_predictions  # noqa: E402

FAMILY_MODULES = {"minicpmv": "minicpmv", "internvl_chat": "internvl", "phi3_v": "phi3v"}
CORRUPTING = {
    "minicpmv": {"rope_theta": 0.0},
    "internvl_chat": {"llm_config": {"rope_theta": 0.0}},
}
"""A config from which the family's own code computes non-finite RoPE buffers (base 0: 1/0 = inf).
Phi-3-vision has none to corrupt: its only non-persistent buffer at load time is CLIP's
`position_ids`, from a constant in its code (its RoPE frequencies are computed in every forward)."""

MAX_NEW_TOKENS = "3"
FOLDERS = ("001.cat", "002.dog", "003.clutter")
"""Three images, one a Caltech-style background: Phi-3-vision's CLIP-width tower makes every question
cost a few tenths of a second, so the tree is as small as a closed-set/binary run allows."""


def small_tree(folder: Path) -> Path:
    sizes = ((64, 48), (40, 56), (90, 30))
    for index, (name, image) in enumerate(zip(FOLDERS, make_rgb_images(len(FOLDERS), seed=11))):
        (folder / name).mkdir(parents=True)
        image.resize(sizes[index]).save(folder / name / f"img{index}.png")
    return folder


class Models:
    """Folders and loaded backends, each built once for the module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders: dict[tuple[str, str], Path] = {}
        self.backends: dict[str, Any] = {}
        self.tree = small_tree(root / "tree")

    def folder(self, model_type: str, kind: str = "random") -> Path:
        key = (model_type, kind)
        if key not in self.folders:
            target = self.root / f"{model_type}-{kind}"
            rig = Rig(answer="dog") if kind == "rig-dog" else None
            overrides = CORRUPTING.get(model_type) if kind == "corrupt" else None
            self.folders[key] = build_tiny_remote(model_type, target, words=WORDS, rig=rig, overrides=overrides)
        return self.folders[key]

    def backend(self, model_type: str) -> Any:
        if model_type not in self.backends:
            self.backends[model_type] = load_model(f"hf:{self.folder(model_type)}", {"trust_remote_code": True}, "cpu")
        return self.backends[model_type]


@pytest.fixture(scope="module")
def models() -> Any:
    with tempfile.TemporaryDirectory(prefix="classbench-remote-") as root:
        yield Models(Path(root))


def classbench(*args: str) -> tuple[int, str]:
    """`python -m classbench ARGS` in this process: (exit code, stderr)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = in_process.classbench(*args)
    return code, stderr.getvalue()


def error_line(stderr: str) -> str:
    """The one error line the CLI ends with (transformers' progress bars may come before it)."""
    lines = stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], stderr
    return lines[-1]


def run(models: Models, model: Path, out: Path, *args: str) -> tuple[int, str]:
    return classbench("run", "--dataset", str(models.tree), "--model", f"hf:{model}", "--trust-remote-code",
                      "--background", "clutter", "--device", "cpu", "--max-new-tokens", MAX_NEW_TOKENS,
                      "--no-progress", "--out", str(out), *args)


def stored(out: Path) -> tuple[list[tuple], dict[str, Any]]:
    """(image, key, answer, error) of every question, and the model's recorded description."""
    db = sqlite3.connect(out / "run.sqlite")
    try:
        rows = list(db.execute("SELECT image, key, answer, error FROM questions ORDER BY image, key"))
        model = json.loads(db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()[0])
    finally:
        db.close()
    return rows, model


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_closed_set_and_binary_run_end_to_end_alike_at_batch_sizes_1_and_8(models: Models, model_type: str) -> None:
    folder = models.folder(model_type)
    answers = {}
    for size in ("1", "8"):
        out = models.root / f"runs/{model_type}-closed-{size}"
        code, err = run(models, folder, out, "--strategy", "closed-set", "--shuffles", "2", "--batch-size", size)
        assert code == 0, err
        answers[size], model = stored(out)
        assert len(answers[size]) == 2 * len(FOLDERS)
        assert all(error is None for *_, error in answers[size]), answers[size]
        assert set(read_predictions(out)) == {row[0] for row in answers[size]}
    assert answers["1"] == answers["8"]
    settings = model["settings"]
    assert settings["model_type"] == model_type
    assert settings["generation"]["num_beams"] == 1 and settings["generation"]["repetition_penalty"] == 1.0
    assert settings["generation"]["do_sample"] is False
    assert set(settings["buffers"]["recomputed"]) <= set(settings["buffers"]["checked"])
    if model_type == "phi3_v" and importlib.util.find_spec("flash_attn") is None:
        assert settings["attn_implementation"] == "eager", "the published config asks for flash attention"

    out = models.root / f"runs/{model_type}-binary"
    code, err = run(models, folder, out, "--strategy", "binary", "--batch-size", "8")
    assert code == 0, err
    rows, _ = stored(out)
    assert rows and all(error is None for *_, error in rows)
    assert set(read_predictions(out)) == {row[0] for row in answers["1"]}


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_a_rigged_model_gives_exactly_the_expected_predictions(models: Models, model_type: str) -> None:
    out = models.root / f"runs/{model_type}-rigged"
    code, err = run(models, models.folder(model_type, "rig-dog"), out, "--strategy", "closed-set", "--shuffles", "2")
    assert code == 0, err
    rows, _ = stored(out)
    assert [answer for _, _, answer, _ in rows] == ["dog"] * (2 * len(FOLDERS))
    assert set(read_predictions(out).values()) == {"dog"}


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_greedy_tokens_with_the_kv_cache_equal_full_forwards_without_it(models: Models, model_type: str) -> None:
    import importlib

    backend = models.backend(model_type)
    family = importlib.import_module(f"classbench.models.remote.{FAMILY_MODULES[model_type]}")
    image = make_rgb_images(1, size=(50, 40), seed=5)[0]
    forward = family.forward_for(backend, image, f"Choose one from {', '.join(CLASSES)}.")
    cached = decode.greedy(forward, 4, stops=())
    full = decode.greedy(forward, 4, stops=(), use_cache=False)
    assert len(cached) == 4
    assert cached == full


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_buffers_after_loading_equal_a_fresh_build_from_the_config(models: Models, model_type: str) -> None:
    """A model of its own: Phi-3-vision's forward stores the RoPE frequencies it computes as a buffer."""
    model = load_model(f"hf:{models.folder(model_type)}", {"trust_remote_code": True}, "cpu").model
    torch.manual_seed(0)
    reference = type(model)(model.config)
    expected = buffers.non_persistent(reference)
    loaded = buffers.non_persistent(model)
    assert loaded and set(loaded) == set(expected)
    for name, tensor in loaded.items():
        assert torch.equal(tensor, expected[name].to(tensor.dtype)), name


def test_transformers_5_leaves_these_buffers_wrong_and_loading_recomputes_them(models: Models) -> None:
    """Without the check MiniCPM-V's sin-cos table and InternLM2's RoPE caches come back wrong."""
    assert models.backend("minicpmv").settings["buffers"]["recomputed"] == ["resampler.pos_embed"]
    recomputed = models.backend("internvl_chat").settings["buffers"]["recomputed"]
    assert {name.rsplit(".", 1)[1] for name in recomputed} == {"inv_freq", "cos_cached", "sin_cached"}


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_a_buffer_corrupted_in_memory_is_recomputed_and_one_the_code_cannot_make_is_refused(
        models: Models, model_type: str) -> None:
    model = load_model(f"hf:{models.folder(model_type)}", {"trust_remote_code": True}, "cpu").model
    loaded = buffers.non_persistent(model)
    name, tensor = next(iter(loaded.items()))
    original = tensor.clone()
    with torch.no_grad():
        tensor.fill_(-7)
    assert buffers.verify(model, "hf:tiny") == [name]
    assert torch.equal(tensor, original)
    owner = model.get_submodule(name.rpartition(".")[0])
    owner.register_buffer("stray", torch.full((2,), float("nan")), persistent=False)
    try:
        with pytest.raises(UserError, match=rf"buffer {name.rpartition('.')[0]}\.stray .*refuses"):
            buffers.verify(model, "hf:tiny")
    finally:
        del owner._buffers["stray"]
        owner._non_persistent_buffers_set.discard("stray")


@pytest.mark.parametrize("model_type", list(CORRUPTING))
def test_a_model_whose_code_computes_a_corrupt_buffer_is_refused_not_run(models: Models, model_type: str) -> None:
    out = models.root / f"runs/{model_type}-corrupt"
    code, err = run(models, models.folder(model_type, "corrupt"), out, "--strategy", "closed-set")
    assert code == 2
    line = error_line(err)
    assert f"({model_type})" in line and "inv_freq is not finite" in line and "refuses" in line
    assert not (out / "run.sqlite").exists() or stored(out)[0] == []


def test_a_remote_model_that_cannot_load_says_so_in_one_line(models: Models) -> None:
    folder = models.root / "broken-internvl"
    folder.mkdir()
    for path in models.folder("internvl_chat").iterdir():
        if path.name != "model.safetensors":
            (folder / path.name).write_bytes(path.read_bytes())
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    code, err = classbench("run", "--dataset", str(models.tree), "--model", f"hf:{folder}", "--trust-remote-code",
                           "--device", "cpu", "--no-progress", "--out", str(models.root / "runs/broken"))
    assert code == 2
    assert f"hf:{folder} (internvl_chat): failed to load" in error_line(err)


def test_buffers_are_verified_in_the_dtype_the_model_is_loaded_in(models: Models) -> None:
    """In bf16 InternLM2 computes its cos/sin caches in the default dtype and `inv_freq` in float32."""
    model = load_model(f"hf:{models.folder('internvl_chat')}", {"trust_remote_code": True, "dtype": "bf16"},
                       "cpu").model
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        reference = buffers.non_persistent(type(model)(model.config))
    finally:
        torch.set_default_dtype(previous)
    loaded = buffers.non_persistent(model)
    assert {tensor.dtype for tensor in loaded.values()} == {torch.bfloat16, torch.float32}
    for name, tensor in loaded.items():
        assert torch.equal(tensor, reference[name]), name


def test_a_missing_package_is_named_in_one_line(models: Models) -> None:
    folder = models.root / "internvl-without-einops"
    folder.mkdir()
    for path in models.folder("internvl_chat").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    saved = sys.modules.get("einops")
    sys.modules["einops"] = None  # type: ignore[assignment]  # `import einops` now fails, as when not installed
    try:
        with pytest.raises(UserError) as raised:
            load_model(f"hf:{folder}", {"trust_remote_code": True}, "cpu")
    finally:
        if saved is None:
            del sys.modules["einops"]
        else:
            sys.modules["einops"] = saved
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"hf:{folder} (internvl_chat): its code needs a package") and "einops" in message
