"""The leaderboard in the published comparison's shape, from run folders.

Each folder's metrics are recomputed from its store, so a report never shows numbers older than
the answers it holds; a folder with only `metrics.json` (copied without its store) is read as is.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from classbench.errors import UserError
from classbench.store import STORE_NAME, Store

COLUMNS = ("model", "strategy", "macro avg F1", "weighted avg F1", "accuracy", "GPU (GB)", "Speed (it/s)")
COST_COLUMNS = ("Cost (USD)", "USD / 1k images")
"""Added only when some run was priced (API models), so local-only tables keep the published shape."""


def columns(results: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    return COLUMNS + COST_COLUMNS if _priced(results) else COLUMNS


def load_metrics(folder: Path) -> dict[str, Any]:
    from classbench import metrics

    if (folder / STORE_NAME).is_file():
        store = Store.open_existing(folder)
        try:
            return metrics.compute(store)
        finally:
            store.close()
    if (folder / "metrics.json").is_file():
        return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    raise UserError(f"{folder}: not a classbench run folder (no {STORE_NAME} or metrics.json)")


def rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    ordered = sorted(results, key=lambda m: m.get("accuracy") or 0.0, reverse=True)
    cost = _priced(results)
    return [[
        str(m.get("model")),
        str(m.get("strategy")),
        _number(m["macro_avg"]["f1-score"]),
        _number(m["weighted_avg"]["f1-score"]),
        _number(m["accuracy"]),
        "N/A" if m.get("peak_gpu_gb") is None else f"{m['peak_gpu_gb']:.0f}" if m["peak_gpu_gb"] >= 10
        else f"{m['peak_gpu_gb']:.1f}",
        "N/A" if not m.get("images_per_s") else f"{m['images_per_s']:.2f}",
        *([_money(m.get("cost_usd")), _money(m.get("cost_per_1000_images"))] if cost else []),
    ] for m in ordered]


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
