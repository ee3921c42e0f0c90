"""The HTML report, opened in a real headless Chromium: it loads with no console errors and no
network requests, shows the leaderboard, plots, comparisons and gallery, sorts, and renders every
user string (a class named like an HTML injection) as text. A screenshot of the page is saved to
test-output/report.png for a person to look at."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from browser import chromium_or_skip, open_page  # noqa: E402
from report_runs import MONEY, XSS, Runs, cli, real_runs  # noqa: E402

SCREENSHOT = Path(__file__).resolve().parents[1] / "test-output" / "report.png"
BIAS = {"shuffles": 3, "vote_agreement": 0.8, "unanimous_share": 0.6,
        "positional_bias": {"answers": 45, "uniform_share": 0.2, "share_by_position": [0.4, 0.2, 0.2, 0.1, 0.1],
                            "count_by_position": [18, 9, 9, 5, 4]}}


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Runs, int]:
    """The report over the sweep, the second 5-class run, and a closed-set-like metrics.json-only folder."""
    runs = real_runs(tmp_path_factory)
    closed = tmp_path_factory.mktemp("closed-set-like")
    metrics = json.loads((runs.points[5] / "metrics.json").read_text())
    metrics.update(strategy="closed-set", strategy_summary=BIAS)
    (closed / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path_factory.mktemp("html") / "report.html"
    cli("report", str(runs.sweep), str(runs.other), str(closed), "--html", str(out))
    return out, runs, 4


def test_user_strings_are_escaped_in_the_file(report: tuple[Path, Runs, int]) -> None:
    text = report[0].read_text(encoding="utf-8")
    assert XSS not in text
    assert html.escape(XSS) in text
    assert html.escape(MONEY) in text
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text


EMBEDDED = {"accuracy-vs-classes": "svg", "speed-vs-accuracy": "png", "01-efficientnet-lite0-direct-n3-confusion": "svg",
            "02-efficientnet-lite0-direct-n5-per-class-f1": "svg",
            "04-efficientnet-lite0-closed-set-n5-positional-bias": "svg"}


def test_each_plot_is_saved_once_in_the_format_the_page_embeds(report: tuple[Path, Runs, int]) -> None:
    plots = report[0].with_name("report-plots")
    names = {path.name for path in plots.iterdir()}
    for stem, suffix in EMBEDDED.items():
        other = "png" if suffix == "svg" else "svg"
        assert f"{stem}.{suffix}" in names and f"{stem}.{other}" not in names, stem
    assert (plots / "speed-vs-accuracy.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (plots / "accuracy-vs-classes.svg").read_bytes()[:1000]


def test_plots_png_svg_saves_every_plot_in_both_formats(report: tuple[Path, Runs, int], tmp_path: Path) -> None:
    _, runs, _ = report
    out = tmp_path / "both.html"
    cli("report", str(runs.sweep), "--html", str(out), "--plots", "png,svg")
    names = {path.name for path in (tmp_path / "both-plots").iterdir()}
    for stem in ("accuracy-vs-classes", "speed-vs-accuracy", "01-efficientnet-lite0-direct-n3-confusion",
                 "02-efficientnet-lite0-direct-n5-per-class-f1"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
    assert (tmp_path / "both-plots" / "01-efficientnet-lite0-direct-n3-confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_plots_needs_html_and_a_known_format(report: tuple[Path, Runs, int], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from classbench.cli import app
    from classbench.errors import UserError

    _, runs, _ = report
    for args in (["--plots", "png"], ["--html", str(tmp_path / "r.html"), "--plots", "pdf"]):
        result = CliRunner().invoke(app, ["report", str(runs.points[3]), *args])
        assert isinstance(result.exception, UserError), args


def test_the_page_renders_cleanly_in_chromium(report: tuple[Path, Runs, int], tmp_path: Path) -> None:
    binary = chromium_or_skip()
    path, runs, n_runs = report
    url = path.resolve().as_uri()
    with open_page(binary, url, tmp_path / "profile") as page:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(SCREENSHOT)
        rows = page.evaluate("document.querySelectorAll('#leaderboard-table tbody tr').length")
        plots = page.evaluate("Array.from(document.querySelectorAll('figure.plot')).map(f => [f.querySelector("
                              "'figcaption').textContent.split(' · ')[0], f.querySelector('img, svg')"
                              ".getBoundingClientRect().width])")
        thumbnails = page.evaluate("Array.from(document.querySelectorAll('.tile img')).map(i => i.naturalWidth)")
        as_text = page.evaluate(f"Array.from(document.querySelectorAll('td, strong, div')).some("
                                f"e => e.textContent === {json.dumps(XSS)})")
        injected = page.evaluate("document.querySelectorAll('img[src=\"x\"], img:not([src^=\"data:\"])').length")
        comparisons = page.evaluate("document.querySelectorAll('#comparison-table tbody tr').length")
        bias = page.evaluate("!!document.getElementById('plot-04-efficientnet-lite0-closed-set-n5-positional-bias')")
        before = page.evaluate("Array.from(document.querySelectorAll('#leaderboard-table tbody tr td:nth-child(3)'))"
                               ".map(c => c.textContent)")
        page.evaluate("document.querySelector('#leaderboard-table thead th:nth-child(3)').click()")
        after_one = page.evaluate("Array.from(document.querySelectorAll('#leaderboard-table tbody tr td:nth-child(3)'))"
                                  ".map(c => c.textContent)")
        log = page.log
    assert log.console_errors == []
    assert log.dialogs == []
    foreign = [url_[:80] for url_ in log.requests if url_ != url and not url_.startswith("data:")]
    assert foreign == []
    assert rows == n_runs
    titles = [title for title, _ in plots]
    assert "Accuracy against the number of classes" in titles and "Speed against accuracy" in titles
    assert titles.count("Confusion matrix") == n_runs and "Closed-set positional bias" in titles
    assert all(width > 0 for _, width in plots)
    assert thumbnails and all(width > 0 for width in thumbnails)
    assert as_text and injected == 0
    assert comparisons == 1  # the sweep's 5-class point against the other 5-class run (the copy has no predictions)
    assert bias
    assert sorted(before) == sorted(after_one) and after_one == sorted(after_one, key=int, reverse=True)


def test_a_sweep_folder_stands_for_its_points(report: tuple[Path, Runs, int]) -> None:
    _, runs, _ = report
    text = cli("report", str(runs.sweep))
    assert text.count("| efficientnet-lite0 | direct |") == 2


def test_report_needs_a_folder_or_a_comparison(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from classbench.cli import app
    from classbench.errors import UserError

    result = CliRunner().invoke(app, ["report"])
    assert isinstance(result.exception, UserError)
    empty = tmp_path / "nothing"
    empty.mkdir()
    result = CliRunner().invoke(app, ["report", str(empty)])
    assert isinstance(result.exception, UserError) and "no run folders below it" in str(result.exception)


def test_the_gallery_says_why_when_the_dataset_is_gone(tmp_path_factory: pytest.TempPathFactory) -> None:
    from classbench.report import html as html_report
    from classbench.report.gallery import GALLERY_SIZE
    from classbench.store import Store

    runs = real_runs(tmp_path_factory)
    moved = tmp_path_factory.mktemp("moved") / "run"
    shutil.copytree(runs.points[5], moved)
    store = Store.open_existing(moved)
    try:
        spec = store.meta("spec")
        store.set_meta({"spec": {**spec, "dataset": {**spec["dataset"], "source": str(moved / "gone")}}})
        wrong = [p for p in store.predictions() if p.prediction != p.label]
    finally:
        store.close()
    assert wrong, "the 5-class run should get some images wrong"
    page = html_report.render([moved], tmp_path_factory.mktemp("plots"))
    assert "images not shown: --dataset" in page and "no such file or folder" in page
    assert page.count('<div class="missing">no image</div>') == len(wrong[:GALLERY_SIZE])
