"""Untrusted input, read in-process: configs, manifests, label sets, images, foreign run folders (#13).

Each case once gave a traceback, a hang, memory exhaustion or a silently wrong number; each now gives
one line a user can act on, or the exact value the file holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from classbench.answers import AnswerMapper
from classbench.datasets import open_dataset
from classbench.errors import ImageLoadError, UserError
from classbench.images import load_image
from classbench.report import leaderboard
from classbench.spec import build_spec

CLASSBENCH = [sys.executable, "-m", "classbench"]


def _bomb(levels: int = 9) -> str:
    """A billion-laughs YAML value: each level lists the previous one nine times (9**9 strings)."""
    anchors = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    anchors += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(anchors) + "]"


@pytest.fixture
def image_limits():
    """`images.set_limits`, reset to the defaults after the test."""
    from classbench.images import set_limits

    yield set_limits
    set_limits()


PEAK = ("import atexit, re, runpy, sys\n"
        "def peak():\n"
        "    status = open('/proc/self/status').read()\n"
        "    print('peak-kB', re.search(r'VmHWM:\\s*(\\d+)', status).group(1), file=sys.stderr)\n"
        "atexit.register(peak)\n"
        "sys.argv[0] = 'classbench'\n"
        "runpy.run_module('classbench', run_name='__main__')\n")
"""`python -m classbench` that reports its own peak memory at exit. The kernel's wait4/getrusage figure
would not do: a child forked from this big test process inherits the parent's peak at exec."""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
@pytest.mark.parametrize("out", [[], ["--out", "runs/bomb"]], ids=["default-out", "with-out"])
def test_a_yaml_alias_bomb_is_refused_fast_and_small(tmp_path: Path, out: list[str]) -> None:
    config = tmp_path / "bomb.yaml"
    config.write_text(f"model: efficientnet-lite0\ndataset: {tmp_path}\nsample: {{background: {_bomb()}}}\n")

    def cap_memory() -> None:  # on the code before the fix the bomb grows until this cap stops it
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", PEAK, "run", "--config", str(config), *out], cwd=tmp_path,
                              capture_output=True, text=True, timeout=15, preexec_fn=cap_memory)
    except subprocess.TimeoutExpired:
        pytest.fail("still running after 15 s")
    elapsed = time.monotonic() - started
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert lines[-1].startswith("peak-kB ") and len(lines) == 2, done.stderr
    peak_mb = int(lines[-1].split()[1]) / 1024
    assert elapsed < 5 and peak_mb < 500, (elapsed, peak_mb)
    assert "alias" in lines[0] and "bomb.yaml" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "loop.yaml"
    config.write_text("model: efficientnet-lite0\ndataset: .\nsample: {background: &x [*x]}\n")
    with pytest.raises(UserError, match="refers to itself"):
        build_spec(config, {})


@pytest.mark.parametrize(("yaml_text", "field"), [
    ("sample: {seed: yes}", "seed"),
    ("seed: yes", "seed"),
    ("per_class: true", "per_class"),
    ("runtime: {batch_size: on}", "batch_size"),
    ("strategy: {name: closed-set, settings: {shuffles: yes}}", "shuffles"),
])
def test_yes_is_no_number(tmp_path: Path, yaml_text: str, field: str) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"model: hf:some/vlm\ndataset: {tmp_path}\n{yaml_text}\n")
    with pytest.raises(UserError, match=f"bad value for '{field}'.*(got True)"):
        build_spec(config, {})


def test_numbers_still_read_as_numbers(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"model: hf:some/vlm\ndataset: {tmp_path}\nseed: 3\nmax_cost: 2\n"
                      "strategy: {name: closed-set, settings: {shuffles: 2}}\n")
    spec = build_spec(config, {})[0]
    assert (spec.sample.seed, spec.runtime.max_cost, spec.strategy.settings["shuffles"]) == (3, 2.0, 2)


# --- manifests: labels exactly as json and csv parse them ------------------------------------------

ODD_LABELS = ["line\u2028separator", "next\u0085line", "form\x0cfeed", "two\nlines", " padded ", "tab\tbed"]


def test_jsonl_labels_survive_exactly(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"image": f"{i}.png", "label": label}, ensure_ascii=False) + "\n"
                                for i, label in enumerate(ODD_LABELS)), encoding="utf-8")
    dataset = open_dataset(str(manifest))
    assert [sample.label for sample in dataset.samples] == ODD_LABELS


def test_csv_labels_survive_exactly_and_errors_name_the_right_line(tmp_path: Path) -> None:
    import csv

    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label"])
        writer.writerows([(f"{i}.png", label) for i, label in enumerate(ODD_LABELS)])
    assert [sample.label for sample in open_dataset(str(manifest)).samples] == ODD_LABELS
    # header on line 1; the quoted newline makes the 2nd record span lines 3-4; the empty image is line 5
    manifest.write_text('image,label\na.png,cat\nb.png,"two\nlines"\n,dog\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"m\.csv:5: no value for column 'image'"):
        open_dataset(str(manifest))


def test_one_file_under_two_spellings_is_listed_twice(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,label\nb/x.png,cat\na/../b/x.png,cat\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"m\.csv:3: image 'b/x.png' \(as 'a/../b/x.png'\) is listed twice"):
        open_dataset(str(manifest))


@pytest.mark.parametrize(("name", "content", "message"), [
    ("m.csv", b"image,label\n\xff\xfe.png,cat\n", "not UTF-8"),
    ("m.jsonl", b"[" * 100_000 + b"\n", "m.jsonl:1"),
    ("m.csv", b"image,label\n" + b'"' + b"x" * 200_000 + b'",cat\n', "not valid CSV"),
])
def test_hostile_manifests_are_one_line_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=message) as raised:
        open_dataset(str(tmp_path / name))
    assert "\n" not in str(raised.value)


# --- class names no answer can tell apart ----------------------------------------------------------

def test_colliding_class_names_are_refused_with_their_names() -> None:
    with pytest.raises(UserError, match="'cat' = 'Cat' = 'cats'"):
        AnswerMapper(["cat", "Cat", "cats", "dog"])


def test_an_alias_file_disambiguates_colliding_folders(tmp_path: Path) -> None:
    from classbench.answers import check_distinct

    for folder in ("cat", "Cat", "cats"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "a.png")
    with pytest.raises(UserError, match="'Cat' = 'cat' = 'cats'"):
        check_distinct(open_dataset(str(tmp_path)).classes)
    (tmp_path / "labels.yaml").write_text("Cat: lion\ncats: kitten\n")
    classes = open_dataset(str(tmp_path)).classes
    check_distinct(classes)
    assert AnswerMapper(classes).map("a kitten").label == "kitten"


# --- images that would cost unbounded memory ---------------------------------------------------------

def test_large_and_thin_images_are_refused_before_decoding_with_the_setting_that_allows_them(
        tmp_path: Path, image_limits) -> None:
    from trees import bomb_png

    set_limits = image_limits
    (tmp_path / "big.png").write_bytes(bomb_png(12000, 12000))
    with pytest.raises(ImageLoadError, match="--max-image-pixels"):
        load_image(tmp_path / "big.png")
    set_limits(max_pixels=200_000_000)
    with pytest.raises(ImageLoadError) as raised:  # now decoded: this tiny file then turns out truncated
        load_image(tmp_path / "big.png")
    assert "max-image-pixels" not in str(raised.value)
    set_limits()
    for size in ((2, 1000), (1, 40000)):
        Image.new("RGB", size).save(tmp_path / "thin.png")
        with pytest.raises(ImageLoadError, match="aspect ratio over 200:1.*--max-aspect-ratio"):
            load_image(tmp_path / "thin.png")
    set_limits(max_aspect_ratio=50_000)
    assert load_image(tmp_path / "thin.png").size == (1, 40000)


# --- run folders that are not classbench's -----------------------------------------------------------

def test_a_foreign_metrics_json_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.9, "loss": 0.1}')
    with pytest.raises(UserError, match="not a classbench metrics.json"):
        leaderboard.load_metrics(tmp_path)
    done = subprocess.run([*CLASSBENCH, "report", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not a classbench metrics.json" in done.stderr


def _metrics(model: str, **figures: object) -> dict:
    base = {"model": model, "strategy": "direct", "accuracy": 0.0, "macro_avg": {"f1-score": 0.0},
            "weighted_avg": {"f1-score": 0.0}, "n_samples": 10, "n_images": 10, "n_failed": 0, "complete": True}
    return {**base, **figures}


def test_the_text_leaderboard_marks_unfinished_and_unscored_runs() -> None:
    table = leaderboard.markdown([
        _metrics("done", accuracy=0.5, macro_avg={"f1-score": 0.4}, weighted_avg={"f1-score": 0.4}),
        _metrics("half", accuracy=0.5, n_images=4, n_failed=1, complete=False),
        _metrics("broken", n_images=0, n_failed=10, complete=False),
    ])
    lines = {line.split(" | ")[0]: line for line in table.splitlines()[2:]}
    assert set(lines) == {"| done", "| half (incomplete: 4 of 10 scored)", "| broken (incomplete: 0 of 10 scored)"}
    assert "| 0.50 |" in lines["| done"]
    assert lines["| broken (incomplete: 0 of 10 scored)"].count("N/A") >= 3
    assert "0.00" not in lines["| broken (incomplete: 0 of 10 scored)"]


# --- which failures a later run asks again -----------------------------------------------------------

def test_the_same_model_error_twice_is_settled_and_an_environment_error_never(tmp_path: Path) -> None:
    from classbench.datasets import Sample
    from classbench.records import MODEL_ERROR, Prediction
    from classbench.store import Store

    store = Store(tmp_path / "run.sqlite")
    images = ["thin.png", "flaky.png", "changing.png", "ok.png"]
    store.begin_or_resume({"id": 1}, [Sample(image, "cat") for image in images], {})
    errors = {"thin.png": ["ValueError: absolute aspect ratio must be smaller than 200, got 500.0"] * 2,
              "flaky.png": ["OutOfMemoryError: CUDA out of memory. Tried to allocate 7.80 GiB"] * 2,
              "changing.png": ["ValueError: first", "ValueError: second"]}
    for attempt in range(2):  # two runs of the folder
        for image, texts in errors.items():
            assert image not in store.finished_images()
            store.record(image, [], Prediction(image, "cat", None, "failed", MODEL_ERROR + texts[attempt]))
        store.record("ok.png", [], Prediction("ok.png", "cat", "cat", "ok"))
    assert store.finished_images() == {"thin.png", "ok.png"}
    assert store.predictions()[0].error == ("model refused the image: ValueError: absolute aspect ratio must be "
                                            "smaller than 200, got 500.0")
    store.close()
