"""The report's matplotlib plots, each rendered to PNG or SVG bytes in one format at a time.

The page draws a run's own plots itself (`svgplots`); matplotlib draws the sweep-wide plots, and
every plot when `--plots png,svg` asks for files for slides and papers. Figures are built with
`matplotlib.figure.Figure` and its Agg canvas, never pyplot, so no global backend or state is
touched and nothing opens a window. SVG text is drawn as paths (no font files needed, nothing for
a browser to fetch) and the SVG carries no date, so a report rebuilt from the same runs is
byte-identical. Every label that came from a user passes through `_text`, because matplotlib reads
`$…$` as mathtext and would fail on a class named `$5 bill or $10 bill`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

MANY_CLASSES = 30
"""Above this, a confusion matrix drops its tick labels and per-class F1 shows the extremes only."""
F1_EXTREMES = 20


def render(figure: Any, fmt: str) -> bytes:
    """The figure as `fmt` ("png" or "svg") bytes: one render, the only one this figure gets."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    metadata = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    figure.savefig(buffer, format=fmt, dpi=110, bbox_inches="tight", metadata=metadata)
    return buffer.getvalue()


def accuracy_vs_classes(groups: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> Any | None:
    """One line per model × strategy with its 95% interval band; None unless some line has two points."""
    if not any(len({m["n_classes"] for m in points}) >= 2 for _, points in groups):
        return None
    figure = _figure(7.5, 4.5)
    axes = figure.add_subplot()
    for name, points in groups:
        ordered = sorted(points, key=lambda m: m["n_classes"])
        sizes = [m["n_classes"] for m in ordered]
        line, = axes.plot(sizes, [m["accuracy"] for m in ordered], marker="o", label=_text(name, 60))
        bands = [m.get("accuracy_ci95") or [m["accuracy"], m["accuracy"]] for m in ordered]
        axes.fill_between(sizes, [low for low, _ in bands], [high for _, high in bands], color=line.get_color(),
                          alpha=0.18, linewidth=0)
    sizes = sorted({m["n_classes"] for _, points in groups for m in points})
    if len(sizes) <= 12:
        axes.set_xticks(sizes)
    axes.set_xlabel("number of classes")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1.02)
    axes.set_title("Accuracy against the number of classes (bands: 95% bootstrap intervals)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower left")
    return figure


def speed_vs_accuracy(results: Sequence[dict[str, Any]], names: Sequence[str]) -> Any | None:
    """Images per second against accuracy; marker area grows with peak GPU memory (hollow: not measured)."""
    points = [(m, name) for m, name in zip(results, names) if m.get("images_per_s")]
    if not points:
        return None
    figure = _figure(7.5, 4.5)
    axes = figure.add_subplot()
    for m, name in points:
        gpu = m.get("peak_gpu_gb")
        size = 40 + 25 * gpu if gpu else 40
        style = {"facecolors": "none", "edgecolors": "C0"} if gpu is None else {"color": "C0", "alpha": 0.7}
        axes.scatter([m["images_per_s"]], [m["accuracy"]], s=size, **style)
        axes.annotate(_text(name, 40), (m["images_per_s"], m["accuracy"]), fontsize=7, xytext=(4, 4),
                      textcoords="offset points")
    speeds = [m["images_per_s"] for m, _ in points]
    if max(speeds) / min(speeds) > 10:
        axes.set_xscale("log")
    axes.set_xlabel("speed (images/s)")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1.05)
    axes.set_title("Speed against accuracy (marker area: peak GPU memory; hollow: not measured)")
    axes.grid(alpha=0.3)
    return figure


def confusion(metrics: dict[str, Any]) -> Any:
    """Row-normalised confusion matrix (each row is a true class; the last column is `invalid`)."""
    import numpy as np

    data = metrics["confusion_matrix"]
    matrix = np.asarray(data["matrix"], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    n = len(data["labels"])
    side = min(4.0 + 0.32 * n, 14.0)
    figure = _figure(side + 1.2, side)
    axes = figure.add_subplot()
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= MANY_CLASSES:
        axes.set_xticks(range(n + 1), [_text(name, 24) for name in data["columns"]], rotation=90, fontsize=7)
        axes.set_yticks(range(n), [_text(name, 24) for name in data["labels"]], fontsize=7)
    if n <= 12:
        for (row, column), value in np.ndenumerate(normalised):
            if matrix[row, column]:
                axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                          color="white" if value > 0.6 else "black")
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"Confusion matrix, {n} classes (rows normalised)")
    return figure


def per_class_f1(metrics: dict[str, Any]) -> Any:
    """F1 per class, worst at the top; with many classes only the worst and best few."""
    title, ranked = ranked_f1(metrics)
    figure = _figure(7.0, 1.0 + 0.22 * len(ranked))
    axes = figure.add_subplot()
    positions = list(range(len(ranked)))[::-1]
    axes.barh(positions, [values["f1-score"] for _, values in ranked], color="C2")
    axes.set_yticks(positions, [_text(name, 32) for name, _ in ranked], fontsize=7)
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1")
    axes.set_title(title)
    axes.grid(axis="x", alpha=0.3)
    return figure


def ranked_f1(metrics: dict[str, Any]) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """The title and the (class, scores) pairs an F1 plot shows, worst first (this one and `svgplots`'s)."""
    ranked = sorted(metrics["per_class"].items(), key=lambda item: (item[1]["f1-score"], item[0]))
    if len(ranked) <= 2 * F1_EXTREMES:
        return "F1 per class", ranked
    return (f"F1 per class: the {F1_EXTREMES} worst and {F1_EXTREMES} best of {len(ranked)}",
            ranked[:F1_EXTREMES] + ranked[-F1_EXTREMES:])


def positional_bias(bias: dict[str, Any]) -> Any | None:
    """How often the chosen answer sat at each position of the shuffled class list, against uniform."""
    shares = bias.get("share_by_position")
    if not shares:
        return None
    figure = _figure(7.0, 3.2)
    axes = figure.add_subplot()
    axes.bar(range(1, len(shares) + 1), shares, color="C1")
    uniform = bias.get("uniform_share")
    if uniform is not None:
        axes.axhline(uniform, color="black", linestyle="--", linewidth=1, label="uniform")
        axes.legend(fontsize=8)
    axes.set_xlabel("position of the chosen class in the prompt's list")
    axes.set_ylabel("share of answers")
    axes.set_title("Closed-set positional bias")
    return figure


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, min(max(height, 2.0), 40.0)))


def _text(value: Any, limit: int) -> str:
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")

