"""A 200-class confusion matrix in a real headless Chromium: every cell names itself under the
pointer (a real mouse move over the drawn cell), the most-confused pairs are outlined, numbered
and listed, and a class named like an HTML injection stays text. The run's store is written
directly through the Store API, as the runner writes it: drawing a matrix needs no model. A
screenshot of the matrix with its hover text is saved to test-output/confusion-200.png."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from browser import chromium_or_skip, open_page
from classbench.datasets.base import Sample
from classbench.store import Prediction, Store

SCREENSHOT = Path(__file__).resolve().parents[1] / "test-output" / "confusion-200.png"
XSS = "<img src=x onerror=alert(1)>"
CLASSES = [XSS if i == 42 else f"{i:03d} caltech object" for i in range(200)]
CONFUSED = {7: 8, 42: 41, 120: 121}
"""True class → the class its three images are all taken for."""


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from report_runs import cli

    folder = tmp_path_factory.mktemp("run200") / "run"
    folder.mkdir()
    samples = [Sample(f"{i:03d}/{j}.jpg", name) for i, name in enumerate(CLASSES) for j in range(3)]
    store = Store(folder / "run.sqlite")
    store.begin_or_resume({"model": "m"}, samples, {
        "classes": CLASSES,
        "spec": {"model": "hf:some/vlm", "strategy": "closed-set", "dataset": str(folder / "gone")}})
    with store.batch():
        for index, sample in enumerate(samples):
            row = index // 3
            predicted = CLASSES[CONFUSED[row]] if row in CONFUSED else sample.label
            if row == 150 and index % 3 == 0:
                predicted = None
            store.record(sample.id, [], Prediction(sample.id, sample.label, predicted,
                                                   "ok" if predicted else "invalid"))
    store.close()
    out = tmp_path_factory.mktemp("html") / "report.html"
    cli("report", str(folder), "--html", str(out))
    return out


def test_every_cell_names_itself_and_the_confused_pairs_are_marked(page_file: Path, tmp_path: Path) -> None:
    text = page_file.read_text(encoding="utf-8")
    assert XSS not in text
    with open_page(chromium_or_skip(), page_file.resolve().as_uri(), tmp_path / "profile") as page:
        page.evaluate("document.querySelector('figure.cm').scrollIntoView()")

        def hover(row: int, column: int) -> str:
            box = page.evaluate("(() => { const r = document.querySelector('figure.cm .cm-grid')"
                                ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
            x = box[0] + (column + 0.5) * box[2] / 201
            y = box[1] + (row + 0.5) * box[3] / 200
            page.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
            return page.evaluate("(() => { const t = document.querySelector('figure.cm .cm-tip');"
                                 " return t.hidden ? '' : t.textContent; })()")

        diagonal = hover(3, 3)
        zero = hover(0, 199)
        invalid = hover(150, 200)
        injected = hover(42, 41)
        confused = hover(7, 8)
        clip = page.evaluate("(() => { const r = document.querySelector('figure.cm').getBoundingClientRect();"
                             " return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height,"
                             " scale: 1}; })()")
        shot = page.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
        pairs = page.evaluate("Array.from(document.querySelectorAll('figure.cm .cm-pair title'))"
                              ".map(t => t.textContent)")
        listed = page.evaluate("Array.from(document.querySelectorAll('table.confused tbody tr'))"
                               ".map(r => Array.from(r.cells).map(c => c.textContent))")
        images = page.evaluate("document.querySelectorAll('img[src=\"x\"]').length")
        log = page.log
    assert log.console_errors == [] and log.dialogs == []
    assert diagonal == "true: 003 caltech object → predicted: 003 caltech object · 3 images (100.0% of the class)"
    assert zero == "true: 000 caltech object → predicted: 199 caltech object · 0 images (0.0% of the class)"
    assert invalid == "true: 150 caltech object → predicted: (no class) · 1 image (33.3% of the class)"
    assert injected == f"true: {XSS} → predicted: 041 caltech object · 3 images (100.0% of the class)"
    assert confused.startswith("true: 007 caltech object → predicted: 008 caltech object · 3 images")
    assert images == 0
    assert len(pairs) == len(listed) == 4
    assert [row[:4] for row in listed[:3]] == [["1", "007 caltech object", "008 caltech object", "3"],
                                              ["2", "120 caltech object", "121 caltech object", "3"],
                                              ["3", XSS, "041 caltech object", "3"]]
    assert pairs[0].startswith("#1: 007 caltech object → 008 caltech object: 3 images")
    assert json.loads(json.dumps(listed[3]))[1:3] == ["150 caltech object", "(no class)"]
