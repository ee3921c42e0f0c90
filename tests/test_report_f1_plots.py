"""F1 per class with many classes: the page's SVG and the exported matplotlib figure show the same
worst and best classes under the same title."""

from __future__ import annotations

import pytest

from classbench.report import plots, svgplots

METRICS = {"per_class": {f"c{i:02d}": {"f1-score": i / 50, "support": 3} for i in range(50)}}
TITLE = "F1 per class: the 20 worst and 20 best of 50"


def test_the_svg_shows_the_extremes_only() -> None:
    drawn = svgplots.per_class_f1(METRICS)
    assert TITLE in drawn
    assert "c00" in drawn and "c19" in drawn and "c30" in drawn and "c49" in drawn
    assert "c20" not in drawn and "c29" not in drawn


def test_the_matplotlib_figure_shows_the_same_classes() -> None:
    pytest.importorskip("matplotlib")
    axes = plots.per_class_f1(METRICS).axes[0]
    assert axes.get_title() == TITLE
    shown = {label.get_text() for label in axes.get_yticklabels()}
    assert shown == {f"c{i:02d}" for i in (*range(20), *range(30, 50))}
