"""A run's own plots, drawn as inline SVG by classbench itself: the confusion matrix, F1 per class
and closed-set positional bias.

Why not matplotlib here: a 50-run sweep has about 130 of these figures, and matplotlib spends
0.1–0.2 s of CPU on each (39 s for such a page in classbench 0.1, measured by
bench/report_scale.py); these take milliseconds, and
inline SVG lets the page say what every cell is. The confusion matrix draws only its non-empty
cells (shaded by the square root of the share, so that one wrong image in twenty still shows),
carries its class names and counts as data attributes for the page's hover text (every
cell, zeros included), labels its axes up to `LABELLED` classes and outlines and numbers the
most-confused pairs, which the table beside it lists with the same numbers. Only presentation
attributes are used, never `style`, so the page's Content-Security-Policy needs no exception;
every user string is escaped here, in one place (`_esc`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from classbench.report.plots import ranked_f1

LABELLED = 40
"""Up to this many classes the matrix has axis labels; above, hover text names every cell."""
VALUES = 12
"""Up to this many classes each non-empty cell also shows its share as a number."""
BLUES = ((247, 251, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107))
"""matplotlib's `Blues` at 0, ¼, ½, ¾ and 1, interpolated linearly between."""
PAIR_COLOUR = "#d62728"


def confusion(metrics: dict[str, Any], pairs: Sequence[dict[str, Any]]) -> str:
    """The row-normalised matrix (rows: true class; last column: no class) with `pairs` outlined."""
    data = metrics["confusion_matrix"]
    labels, columns, matrix = data["labels"], data["columns"], data["matrix"]
    n = len(labels)
    cell = 30 if n <= VALUES else 16 if n <= LABELLED else max(3, 720 // (n + 1))
    margin = 165 if n <= LABELLED else 24
    left, top = margin, 28
    width, height = max(left + cell * (n + 1) + 8, 600), top + cell * n + margin
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="cm-svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="Confusion matrix, {n} classes">',
             f'<text x="6" y="16" font-size="13" fill="#1d2430">Confusion matrix, {n} classes '
             f'(rows normalised; shade: √share)</text><text x="10" y="{top + cell * n / 2}" font-size="11" text-anchor="middle" fill="#5b6575" '
             f'transform="rotate(-90 10 {top + cell * n / 2})">true</text>',
             f'<rect class="cm-grid" x="{left}" y="{top}" width="{cell * (n + 1)}" height="{cell * n}" '
             f'fill="{_blue(0.0)}" stroke="#d9dee6"/>']
    for row, counts in enumerate(matrix):
        total = sum(counts)
        for column, count in enumerate(counts):
            if not count:
                continue
            share = count / total
            x, y = left + column * cell, top + row * cell
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{_blue(share ** 0.5)}"/>')
            if n <= VALUES:
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell * 0.68}" font-size="{cell * 0.42:.1f}" '
                             f'text-anchor="middle" fill="{"white" if share ** 0.5 > 0.6 else "black"}">{share:.2f}</text>')
    for number, pair in enumerate(pairs, 1):
        row, column = pair["row"], pair["column"]
        x, y = left + column * cell, top + row * cell
        ring = max(cell, 9)
        offset = (ring - cell) / 2
        parts.append(f'<g class="cm-pair"><rect x="{x - offset}" y="{y - offset}" width="{ring}" height="{ring}" '
                     f'fill="none" stroke="{PAIR_COLOUR}" stroke-width="1.6"/>'
                     f'<text x="{x + cell + 2}" y="{y - 1}" font-size="10" fill="{PAIR_COLOUR}">{number}</text>'
                     f'<title>#{number}: {_esc(pair["true"])} → {_esc(pair["predicted"])}: {pair["count"]} images '
                     f'({pair["share"]:.0%} of the class)</title></g>')
    if n <= LABELLED:
        for row, name in enumerate(labels):
            parts.append(f'<text x="{left - 4}" y="{top + row * cell + cell * 0.7}" font-size="10" '
                         f'text-anchor="end" fill="#1d2430">{_esc(_clip(name, 24))}</text>')
        for column, name in enumerate(columns):
            x, y = left + column * cell + cell * 0.7, top + n * cell + 4
            parts.append(f'<text x="{x}" y="{y}" font-size="10" text-anchor="end" fill="#1d2430" '
                         f'transform="rotate(-90 {x} {y})">{_esc(_clip(name, 24))}</text>')
    parts.append(f'<text x="{left + cell * (n + 1) / 2}" y="{height - 4}" font-size="11" text-anchor="middle" '
                 f'fill="#5b6575">predicted</text>')
    parts.append("</svg>")
    return "".join(parts)


def confusion_data(metrics: dict[str, Any]) -> str:
    """The data attributes from which the page's script names any cell under the pointer."""
    data = metrics["confusion_matrix"]
    cells = [[row, column, count] for row, counts in enumerate(data["matrix"])
             for column, count in enumerate(counts) if count]
    attributes = {"labels": data["labels"], "columns": data["columns"], "cells": cells,
                  "totals": [sum(counts) for counts in data["matrix"]]}
    return " ".join(f'data-{key}="{_esc(json.dumps(value, ensure_ascii=False, separators=(",", ":")))}"'
                    for key, value in attributes.items())


def per_class_f1(metrics: dict[str, Any]) -> str:
    """F1 per class as horizontal bars, worst at the top; with many classes the extremes only."""
    title, ranked = ranked_f1(metrics)
    left, bar, row, top = 170, 300, 15, 26
    width, height = left + bar + 50, top + row * len(ranked) + 24
    parts = [_open(width, height, title), f'<text x="{left}" y="16" font-size="13" fill="#1d2430">{_esc(title)}</text>']
    for tick in (0, 0.5, 1):
        x = left + bar * tick
        parts.append(f'<line x1="{x}" y1="{top - 2}" x2="{x}" y2="{height - 20}" stroke="#d9dee6"/>'
                     f'<text x="{x}" y="{height - 6}" font-size="10" text-anchor="middle" fill="#5b6575">'
                     f'{tick:g}</text>')
    for i, (name, values) in enumerate(ranked):
        y, f1 = top + i * row, values["f1-score"]
        parts.append(f'<g><rect x="{left}" y="{y + 2}" width="{bar * f1:.1f}" height="{row - 4}" fill="#2ca02c"/>'
                     f'<text x="{left - 4}" y="{y + row - 4}" font-size="10" text-anchor="end" fill="#1d2430">'
                     f'{_esc(_clip(name, 28))}</text><text x="{left + bar * f1 + 3:.1f}" y="{y + row - 4}" '
                     f'font-size="9" fill="#5b6575">{f1:.2f}</text>'
                     f'<title>{_esc(name)}: F1 {f1:.3f}, support {values["support"]}</title></g>')
    parts.append("</svg>")
    return "".join(parts)


def positional_bias(bias: dict[str, Any]) -> str | None:
    """How often the chosen answer sat at each position of the shuffled class list, against uniform."""
    shares = bias.get("share_by_position")
    if not shares:
        return None
    left, top, plot_w, plot_h = 44, 26, 520, 160
    step = plot_w / len(shares)
    peak = max(max(shares), bias.get("uniform_share") or 0, 1e-9) * 1.1
    width, height = left + plot_w + 10, top + plot_h + 36
    title = "Closed-set positional bias: share of answers by position in the prompt's list"
    parts = [_open(width, height, title), f'<text x="{left}" y="16" font-size="13" fill="#1d2430">{title}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#5b6575"/>']
    for i, share in enumerate(shares):
        h = plot_h * share / peak
        parts.append(f'<rect x="{left + i * step:.2f}" y="{top + plot_h - h:.2f}" width="{max(step - 1, 0.6):.2f}" '
                     f'height="{h:.2f}" fill="#ff7f0e"><title>position {i + 1}: {share:.3f}</title></rect>')
    uniform = bias.get("uniform_share")
    if uniform is not None:
        y = top + plot_h - plot_h * uniform / peak
        parts.append(f'<line x1="{left}" y1="{y:.2f}" x2="{left + plot_w}" y2="{y:.2f}" stroke="black" '
                     f'stroke-dasharray="4 3"><title>uniform: {uniform:.3f}</title></line>')
    parts.append(f'<text x="{left - 4}" y="{top + 8}" font-size="10" text-anchor="end" fill="#5b6575">{peak:.2f}</text>'
                 f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="11" text-anchor="middle" fill="#5b6575">'
                 f'position 1…{len(shares)} of the chosen class (dashed: uniform)</text></svg>')
    return "".join(parts)


def _open(width: float, height: float, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{_esc(label)}">')


def _blue(share: float) -> str:
    position = min(max(share, 0.0), 1.0) * (len(BLUES) - 1)
    low = min(int(position), len(BLUES) - 2)
    mix = position - low
    return "#" + "".join(f"{round(a + (b - a) * mix):02x}" for a, b in zip(BLUES[low], BLUES[low + 1]))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)
