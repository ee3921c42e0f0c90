"""The leaderboard in the published comparison's shape, from run folders.

Each folder's metrics are recomputed from its store, so a report never shows numbers older than
the answers it holds; a folder with only `metrics.json` (copied without its store) is read as is.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from classbench.errors import UserError
from classbench.store import STORE_NAME, Store, damaged

COLUMNS = ("model", "strategy", "macro avg F1", "weighted avg F1", "accuracy", "GPU (GB)", "Speed (it/s)")
COST_COLUMNS = ("Cost (USD)", "USD / 1k images")
"""Added only when some run was priced (API models), so local-only tables keep the published shape."""


def columns(results: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    return COLUMNS + COST_COLUMNS if _priced(results) else COLUMNS


def load_metrics(folder: Path) -> dict[str, Any]:
    from classbench import metrics

    if (folder / STORE_NAME).is_file():
        store = Store.open_existing(folder, read_only=True)
        try:
            return metrics.compute(store)
        except sqlite3.DatabaseError as error:  # damage found past the first page
            raise UserError(damaged(folder / STORE_NAME, error)) from None
        finally:
            store.close()
    if (folder / "metrics.json").is_file():
        return _metrics_json(folder / "metrics.json")
    raise UserError(f"{folder}: not a classbench run folder (no {STORE_NAME} or metrics.json)")


def load_readable(folders: Sequence[Path]) -> tuple[list[Path], list[dict[str, Any]], list[str]]:
    """The folders that could be read, their metrics, and one line per folder that could not: a damaged
    run costs its own row, not the report. Refuses only when no folder could be read."""
    runs, results, unreadable = [], [], []
    for folder in folders:
        try:
            results.append(load_metrics(folder))
            runs.append(folder)
        except UserError as error:
            unreadable.append(str(error))
    if not results:
        raise UserError(unreadable[0] if len(unreadable) == 1 else "no run could be read: " + " | ".join(unreadable))
    return runs, results, unreadable


def _metrics_json(path: Path) -> dict[str, Any]:
    """A copied run's metrics.json, checked to be classbench's before any figure is read from it."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path}: cannot read it as classbench metrics ({error})") from None
    averages = ("macro_avg", "weighted_avg")
    if not (isinstance(loaded, dict) and all(isinstance(loaded.get(key), dict) for key in averages)
            and all(isinstance(loaded[key].get("f1-score"), (int, float, type(None))) for key in averages)
            and isinstance(loaded.get("accuracy"), (int, float, type(None)))):
        raise UserError(f"{path}: not a classbench metrics.json (no macro_avg, weighted_avg and accuracy); "
                        "a run folder holds the run.sqlite and metrics.json that `classbench run` wrote")
    return loaded


def _model_cell(m: dict[str, Any]) -> str:
    """The model's name, marked when the run is unfinished (the HTML report marks it too)."""
    name = str(m.get("model"))
    if m.get("complete", True):
        return name
    n_samples, scored = m.get("n_samples"), m.get("n_images") or 0
    return f"{name} (incomplete{f': {scored} of {n_samples} scored' if n_samples else ''})"


def rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    ordered = sorted(results, key=lambda m: m.get("accuracy") or 0.0, reverse=True)
    cost = _priced(results)
    scored = [m.get("n_images") != 0 for m in ordered]  # a run with no image scored has no accuracy, not 0
    return [[
        _model_cell(m),
        str(m.get("strategy")),
        _number(m["macro_avg"]["f1-score"] if some else None),
        _number(m["weighted_avg"]["f1-score"] if some else None),
        _number(m["accuracy"] if some else None),
        "N/A" if m.get("peak_gpu_gb") is None else f"{m['peak_gpu_gb']:.0f}" if m["peak_gpu_gb"] >= 10
        else f"{m['peak_gpu_gb']:.1f}",
        "N/A" if not m.get("images_per_s") else f"{m['images_per_s']:.2f}",
        *([_money(m.get("cost_usd")), _money(m.get("cost_per_1000_images"))] if cost else []),
    ] for m, some in zip(ordered, scored)]


def markdown(results: Sequence[dict[str, Any]]) -> str:
    header = columns(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows(results)]
    return "\n".join(lines)


def as_csv(results: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns(results))
    writer.writerows(rows(results))
    return buffer.getvalue()


def _number(value: float | None) -> str:
    return "N/A" if value is None else f"{value:.2f}"


def _priced(results: Sequence[dict[str, Any]]) -> bool:
    return any(m.get("cost_usd") is not None for m in results)


def _money(value: float | None) -> str:
    if value is None:
        return "N/A"
    return f"{value:.2f}" if value >= 1 else f"{value:.4f}"
