"""Class names no answer can tell apart (`cat`, `Cat`, `cats`) stop a closed-set run before any question
(#13, defect 9); an alias file that renames them lets the same run go. A tiny random-weight Qwen2-VL
answers, through the real runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from vlm_fixtures import image_tree as make_images
from vlm_fixtures import model_folder, run

from classbench.errors import UserError

pytestmark = pytest.mark.slow


def test_colliding_classes_are_refused_before_any_question_and_an_alias_file_resolves_them(tmp_path: Path) -> None:
    tree = make_images(tmp_path / "source")
    data = tmp_path / "data"
    data.mkdir()
    for name, source in zip(("cat", "Cat", "cats"), sorted(path for path in tree.iterdir() if path.is_dir())):
        source.rename(data / name)
    model = model_folder("qwen2_vl")
    out = tmp_path / "run"
    with pytest.raises(UserError, match="'Cat' = 'cat' = 'cats'"):
        run(data, out, model, "closed-set", batch_size=2)
    assert not (out / "run.sqlite").exists()  # nothing was asked, so nothing pins the folder
    (data / "labels.yaml").write_text("Cat: lion\ncats: kitten\n")
    metrics = run(data, out, model, "closed-set", batch_size=2)
    assert metrics["classes"] == ["cat", "kitten", "lion"] and metrics["n_images"] + metrics["n_failed"] == 3
