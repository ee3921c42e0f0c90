"""The published benchmark in one command: `classbench models` lists its eight models with their exact
flags, the recipe plans every run with the settings each model needs, and a user without a GPU can
run the recipe against tiny models with `--recipe-model NAME=hf:DIR`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from in_process import classbench

from classbench import published
from classbench.errors import UserError

SWEEP = (10, 25, 50, 75, 100, 150, 200)
REMOTE_CODE = {"openbmb/MiniCPM-V-2_6", "OpenGVLab/InternVL2-2B", "microsoft/Phi-3-vision-128k-instruct"}


def test_the_recipe_runs_the_eight_models_at_21_classes_and_the_class_count_sweep() -> None:
    points = published.recipe_points("published-vlm-benchmark")
    table = [p for p in points if p["classes"] == 21]
    assert {p["model"] for p in table} == {entry.model for entry in published.PUBLISHED_MODELS}
    assert len(published.PUBLISHED_MODELS) == 8
    assert sorted((p["model"], p["strategy"]) for p in table) == sorted(
        (entry.model, strategy) for entry in published.PUBLISHED_MODELS for strategy in ("closed-set", "binary"))
    assert all(p["background"] == "clutter" for p in points)
    assert all(p["shuffles"] == 3 for p in points if p["strategy"] == "closed-set")
    sweep = sorted((p["model"], p["classes"]) for p in points if p["classes"] != 21)
    assert sweep == sorted((model, size) for model in ("hf:Qwen/Qwen2-VL-7B-Instruct",
                                                      "hf:meta-llama/Llama-3.2-11B-Vision-Instruct") for size in SWEEP)
    by_model = {p["model"]: p for p in table}
    qwen = by_model["hf:Qwen/Qwen2-VL-7B-Instruct"]
    assert (qwen["dtype"], qwen["max_pixels"], qwen["options"]) == ("bf16", 1003520, {"min_pixels": 200704})
    assert {entry.name for entry in published.PUBLISHED_MODELS if entry.settings.get("trust_remote_code")} == REMOTE_CODE
    assert all(entry.strategies == ("closed-set", "binary") for entry in published.PUBLISHED_MODELS
               if entry.name in REMOTE_CODE)


def test_every_planned_point_is_a_valid_run_spec(tmp_path: Path) -> None:
    from classbench.spec import build_spec

    for point in published.recipe_points("published-vlm-benchmark"):
        spec = build_spec(None, {**point, "dataset": str(tmp_path)})[0]
        assert spec.model.name == point["model"] and spec.sample.classes == point["classes"]


def test_models_lists_the_published_models_with_their_exact_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert classbench("models") == 0
    out = capsys.readouterr().out
    assert "sweep --recipe published-vlm-benchmark" in out
    for entry in published.PUBLISHED_MODELS:
        assert published.flags(entry) in out
    assert ("--model hf:Qwen/Qwen2-VL-7B-Instruct --dtype bf16 --max-pixels 1003520 -o min_pixels=200704" in out)
    assert "--model hf:OpenGVLab/InternVL2-2B --dtype bf16 --trust-remote-code" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--recipe", "nope"], "unknown recipe"),
    (["--recipe", "published-vlm-benchmark", "--recipe-model", "GPT-5"], "not a model of the published benchmark"),
    (["--recipe", "published-vlm-benchmark", "--model", "hf:x"], "--recipe chooses the models"),
    ([], "give the class counts"),
])
def test_bad_recipe_flags_are_one_line(args: list[str], message: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert classbench("sweep", "--dataset", str(tmp_path), *args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_replacements_name_models_by_full_or_short_name() -> None:
    chosen = published.parse_replacements(["llava-hf/llava-v1.6-mistral-7b-hf=hf:/tiny", "gpt-4o"])
    assert chosen == {"llava-hf/llava-v1.6-mistral-7b-hf": "hf:/tiny", "gpt-4o": None}
    with pytest.raises(UserError):
        published.parse_replacements(["gpt-4o="])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    from tinymodels.tiny_models import make_rgb_images
    from tinymodels.tiny_published import build_published_vlm

    root = tmp_path_factory.mktemp("recipe")
    words = ("cat", "dog", "car", "clutter")
    tree = root / "tree"
    for index, (folder, image) in enumerate(zip(("001.cat", "002.dog", "003.car", "257.clutter"),
                                                make_rgb_images(4, seed=9))):
        (tree / folder).mkdir(parents=True)
        image.resize(((64, 48), (40, 90))[index % 2]).save(tree / folder / "a.png")
    return {"tree": tree, "mllama": build_published_vlm("mllama", root / "mllama", words=words),
            "mistral": build_published_vlm("llava_next_mistral", root / "mistral", words=words)}


def test_the_recipe_runs_on_tiny_models_with_one_override_each(tiny: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    code = classbench("sweep", "--recipe", "published-vlm-benchmark", "--dataset", str(tiny["tree"]),
                      "--recipe-model", f"Llama-3.2-11B-Vision-Instruct=hf:{tiny['mllama']}",
                      "--recipe-model", f"llava-v1.6-mistral-7b-hf=hf:{tiny['mistral']}",
                      "--classes", "3,4", "--per-class", "1", "--device", "cpu", "--max-new-tokens", "3",
                      "--no-progress", "--out", str(out))
    assert code == 0, capsys.readouterr().err
    with (out / "sweep.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    planned = {(row["model"], row["strategy"], row["n_classes"]) for row in rows}
    mllama, mistral = f"hf:{tiny['mllama'].resolve()}", f"hf:{tiny['mistral'].resolve()}"
    assert planned == {(mllama, "closed-set", "4"), (mllama, "binary", "4"), (mllama, "closed-set", "3"),
                       (mistral, "closed-set", "4"), (mistral, "binary", "4")}
    assert all(row["complete"] == "True" for row in rows)
    from vlm_fixtures import read_metrics

    for row in rows:
        spec = read_metrics(Path(row["folder"]))["spec"]
        assert spec["sample"]["background"] == "clutter" and spec["sample"]["per_class"] == 1
        expected = "bf16" if row["model"] == mllama else "fp16"
        assert spec["model"]["settings"]["dtype"] == expected, "the published settings apply"
        assert spec["strategy"]["settings"].get("shuffles") == (3 if row["strategy"] == "closed-set" else None)
