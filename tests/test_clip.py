"""Zero-shot image-text backends: tiny random CLIP and SigLIP through the real loading path (plumbing only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classbench import metrics, runner
from classbench.errors import UserError
from classbench.models import load_model
from classbench.report import leaderboard
from classbench.spec import RunSpec
from classbench.store import Store
from clip_helpers import colour_tree, tiny_model_folder

NAMES = ["red apple", "green leaf", "blue sky"]


@pytest.fixture(scope="module", params=["clip", "siglip"])
def model(request):
    return load_model(f"clip:{tiny_model_folder(request.param)}", device="cpu")


def _pictures() -> list[Image.Image]:
    return [Image.new("RGB", size, colour) for size, colour in
            (((40, 30), "red"), ((64, 64), "green"), ((23, 57), "blue"), ((31, 31), "white"))]


def test_built_tokenizer_is_open_clips_tokenizer() -> None:
    """The tiny models carry the real CLIP vocabulary: same ids as open_clip's own tokenizer."""
    import open_clip

    from tinymodels.tiny_clip import clip_tokenizer

    ours, theirs = clip_tokenizer(77), open_clip.get_tokenizer("ViT-B-32")
    for text in ("a photo of a T-shirt/top.", "a blurry photo of a ankle boot.", "Crème brûlée, 42 pieces!"):
        expected = [token for token in theirs([text])[0].tolist() if token]
        assert ours(text)["input_ids"] == expected


def test_probabilities_over_the_given_classes_batch_independent(model) -> None:
    images = _pictures()
    together = model.classify_classes(images, NAMES)
    alone = np.concatenate([model.classify_classes([image], NAMES) for image in images])
    assert together.shape == (4, 3)
    assert np.allclose(together.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-5)
    assert model.embed(images).shape[0] == 4


def test_text_embeddings_are_prepared_once_per_label_set_and_cached(model, tmp_path: Path) -> None:
    first = model.prepare_classes(NAMES, tmp_path)
    again = model.prepare_classes(NAMES, tmp_path)
    other = model.prepare_classes([*NAMES, "tabby cat"], tmp_path)
    assert (first["text_embeddings_cached"], again["text_embeddings_cached"]) == (False, True)
    assert first["text_embeddings_file"] == again["text_embeddings_file"] != other["text_embeddings_file"]
    assert len(list(tmp_path.glob("text_embeddings-*.npz"))) == 2
    with np.load(tmp_path / first["text_embeddings_file"]) as saved:
        assert list(saved["classes"]) == NAMES and saved["embeddings"].shape[0] == 3
        assert np.allclose(np.linalg.norm(saved["embeddings"], axis=1), 1.0, atol=1e-5)


def test_templates_from_a_file_change_the_embeddings_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    folder = tiny_model_folder("clip")
    templates = tmp_path / "templates.txt"
    templates.write_text("# mine\nitap of a {}.\na {} in a video game.\n")
    custom = load_model(f"clip:{folder}", {"templates": str(templates)}, "cpu")
    default = load_model(f"clip:{folder}", {}, "cpu")
    described = custom.prepare_classes(NAMES, tmp_path)
    assert described["templates"] == ["itap of a {}.", "a {} in a video game."]
    assert described["text_embeddings_file"] != default.prepare_classes(NAMES, tmp_path)["text_embeddings_file"]
    with pytest.raises(UserError, match=r"no \{\}"):
        load_model(f"clip:{folder}", {"templates": ["a photo of a cat."]}, "cpu")


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_zero_shot_run_end_to_end_lands_in_the_leaderboard(kind: str, tmp_path: Path) -> None:
    tree = colour_tree(tmp_path / "colours", per_class=3)
    out = tmp_path / "run"
    spec = RunSpec.from_flat(dataset=str(tree), model=f"clip:{tiny_model_folder(kind)}", strategy="direct", batch_size=4)
    result = runner.run(spec, out, log=lambda _: None)
    assert (result.asked, result.total) == (9, 9)
    store = Store.open_existing(out)
    try:
        summary = metrics.write(store, out)
        predictions = store.predictions()
        strategy = store.meta("strategy")
    finally:
        store.close()
    assert summary["n_images"] == 9 and summary["classes"] == sorted(NAMES)
    assert all(p.prediction in NAMES and len(p.detail["scores"]) == 3 for p in predictions)
    assert all(abs(sum(p.detail["scores"]) - 1.0) < 1e-4 for p in predictions)
    assert strategy["zero_shot"]["templates"] and (out / strategy["zero_shot"]["text_embeddings_file"]).is_file()
    assert not (out / "label_map.json").exists()
    assert summary["images_per_s"] and summary["top5_accuracy"] is None
    row = leaderboard.markdown([summary]).splitlines()[2]
    assert row.startswith(f"| clip:{tiny_model_folder(kind)} | direct |")


def test_open_clip_by_architecture_and_checkpoint_file(tmp_path: Path) -> None:
    """open_clip's own loader with a local checkpoint: the backend must use those weights."""
    import open_clip
    import torch

    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "classbench-tiny-openclip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "classbench-tiny-openclip.json")
    torch.manual_seed(0)
    reference = open_clip.create_model("classbench-tiny-openclip").eval()
    torch.save(reference.state_dict(), tmp_path / "weights.pt")

    model = load_model(f"open_clip:classbench-tiny-openclip/{tmp_path / 'weights.pt'}", device="cpu")
    images = _pictures()
    probabilities = model.classify_classes(images, NAMES)
    assert probabilities.shape == (4, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    preprocess = open_clip.image_transform(32, is_train=False)
    with torch.inference_mode():
        expected = reference.encode_image(torch.stack([preprocess(image) for image in images]))
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    assert np.allclose(model.embed(images), expected, atol=1e-5)
    with pytest.raises(UserError, match="ARCH/TAG"):
        load_model("open_clip:ViT-B-32", device="cpu")


def test_the_recorded_dtype_is_the_one_the_weights_have() -> None:
    import torch

    model = load_model(f"clip:{tiny_model_folder('clip')}", {"dtype": "bf16"}, "cpu")
    assert model.settings["dtype"] == "bf16"
    assert next(model.network.parameters()).dtype == torch.bfloat16
