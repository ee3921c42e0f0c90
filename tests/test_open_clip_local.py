"""open_clip models from disk: open_clip's own local-dir: folders and a checkpoint with a custom config JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from classbench.cli import app
from classbench.errors import UserError
from classbench.models import load_model
from clip_helpers import colour_tree
from tinymodels.tiny_clip import TINY_OPEN_CLIP_CONFIG, build_tiny_open_clip

IMAGES = [Image.new("RGB", (40, 30), (200, 20, 20)), Image.new("RGB", (20, 50), (20, 40, 220))]
CLASSES = ["red apple", "blue sky", "green leaf"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny model saved as a local-dir folder (safetensors) and as a bare .bin checkpoint + config JSON."""
    root = tmp_path_factory.mktemp("open_clip")
    folder = build_tiny_open_clip(root / "local-dir")
    bin_folder = build_tiny_open_clip(root / "bin", safetensors=False)
    checkpoint = shutil.copy(bin_folder / "open_clip_pytorch_model.bin", root / "my-model.pt")
    config = root / "my-arch.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP_CONFIG))
    return {"folder": folder, "checkpoint": Path(checkpoint), "config": config, "root": root}


def test_local_dir_and_custom_config_load_the_same_weights(saved: dict[str, Path]) -> None:
    local = load_model(f"open_clip:local-dir:{saved['folder']}", {}, "cpu")
    custom = load_model(f"open_clip:{saved['checkpoint']}", {"model_config": str(saved["config"])}, "cpu")
    assert local.model_id == f"open_clip:local-dir:{saved['folder']}"
    assert local.revision.startswith("sha256:") and custom.revision.startswith("sha256:")
    assert custom.settings["model_config"] == str(saved["config"])
    np.testing.assert_allclose(local.classify_classes(IMAGES, CLASSES), custom.classify_classes(IMAGES, CLASSES),
                               atol=1e-6)
    assert local.embed(IMAGES).shape == (2, TINY_OPEN_CLIP_CONFIG["embed_dim"])


def test_changed_weights_are_a_new_revision(saved: dict[str, Path]) -> None:
    other = build_tiny_open_clip(saved["root"] / "other", seed=1)
    first = load_model(f"open_clip:local-dir:{saved['folder']}", {}, "cpu")
    second = load_model(f"open_clip:local-dir:{other}", {}, "cpu")
    assert first.revision != second.revision


def test_what_cannot_load_says_what_to_do(saved: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no open_clip_config.json"):
        load_model(f"open_clip:local-dir:{tmp_path}", {}, "cpu")
    with pytest.raises(UserError, match="name the checkpoint file"):
        load_model("open_clip:ViT-B-32/laion2b_s34b_b79k", {"model_config": str(saved["config"])}, "cpu")
    (tmp_path / "bad.json").write_text(json.dumps({"embed_dim": 16}))
    with pytest.raises(UserError, match="has embed_dim, vision_cfg and text_cfg"):
        load_model(f"open_clip:{saved['checkpoint']}", {"model_config": str(tmp_path / "bad.json")}, "cpu")


def test_the_command_line_runs_both(saved: dict[str, Path], tmp_path: Path) -> None:
    tree = colour_tree(tmp_path / "tree", per_class=2)
    for label, extra in (("local", ["--model", f"open_clip:local-dir:{saved['folder']}"]),
                         ("custom", ["--model", f"open_clip:{saved['checkpoint']}",
                                     "--option", f"model_config={saved['config']}"])):
        result = CliRunner().invoke(app, ["run", "--dataset", str(tree), *extra, "--out", str(tmp_path / label),
                                          "--no-progress"])
        assert result.exit_code == 0, result.output
        metrics = json.loads((tmp_path / label / "metrics.json").read_text())
        assert metrics["n_images"] == 6 and metrics["model"] == extra[1]
