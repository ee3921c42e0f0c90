"""The sweep table in the published shape: one row per model × strategy, one column per class count.

The markdown table shows one metric (accuracy by default, as published; or macro F1), optionally
with its 95% bootstrap interval; the CSV is long (one row per point) and carries every figure, so
a spreadsheet or plot can pick what it needs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS = {
    "accuracy": (lambda m: m.get("accuracy"), "accuracy_ci95", "accuracy"),
    "macro_f1": (lambda m: (m.get("macro_avg") or {}).get("f1-score"), "macro_f1_ci95", "macro avg F1"),
}
CSV_COLUMNS = ("model", "strategy", "n_classes", "n_images", "accuracy", "accuracy_ci95_low", "accuracy_ci95_high",
               "macro_f1", "macro_f1_ci95_low", "macro_f1_ci95_high", "weighted_f1", "invalid", "images_per_s",
               "peak_gpu_gb", "complete", "folder")


def grid(results: Sequence[dict[str, Any]]) -> tuple[list[int], dict[tuple[str, str], dict[int, dict[str, Any]]]]:
    """Class counts (sorted) and, per (model, strategy) in first-seen order, the point at each count."""
    sizes = sorted({int(m["n_classes"]) for m in results})
    rows: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for m in results:
        rows.setdefault((str(m.get("model")), str(m.get("strategy"))), {})[int(m["n_classes"])] = m
    return sizes, rows


def markdown(results: Sequence[dict[str, Any]], metric: str = "accuracy", intervals: bool = False) -> str:
    value_of, interval_key, title = METRICS[metric]
    sizes, rows = grid(results)
    header = ["model", "strategy", *(str(size) for size in sizes)]
    note = ", with 95% bootstrap intervals" if intervals else ""
    lines = [f"{title} against the number of classes{note}", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for (model, strategy), points in rows.items():
        cells = [model, strategy]
        for size in sizes:
            point = points.get(size)
            cells.append("" if point is None else _cell(value_of(point), point.get(interval_key), intervals))
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def as_csv(results: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    _, rows = grid(results)
    for points in rows.values():
        for size in sorted(points):
            m = points[size]
            accuracy_ci = m.get("accuracy_ci95") or [None, None]
            f1_ci = m.get("macro_f1_ci95") or [None, None]
            writer.writerow([m.get("model"), m.get("strategy"), size, m.get("n_images"), _raw(m.get("accuracy")),
                             _raw(accuracy_ci[0]), _raw(accuracy_ci[1]), _raw(m["macro_avg"]["f1-score"]),
                             _raw(f1_ci[0]), _raw(f1_ci[1]), _raw(m["weighted_avg"]["f1-score"]), m.get("invalid"),
                             _raw(m.get("images_per_s")), _raw(m.get("peak_gpu_gb")), m.get("complete"),
                             m.get("folder", "")])
    return buffer.getvalue()


def write(results: Sequence[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    """sweep.md (accuracy and macro F1, with intervals) and sweep.csv in the sweep folder."""
    text = "\n\n".join([markdown(results, "accuracy"), markdown(results, "accuracy", intervals=True),
                        markdown(results, "macro_f1", intervals=True)]) + "\n"
    (out / "sweep.md").write_text(text, encoding="utf-8")
    (out / "sweep.csv").write_text(as_csv(results), encoding="utf-8")
    return out / "sweep.md", out / "sweep.csv"


def _cell(value: float | None, interval: Sequence[float] | None, intervals: bool) -> str:
    if value is None:
        return "N/A"
    if intervals and interval:
        return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
    return f"{value:.3f}"


def _raw(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
