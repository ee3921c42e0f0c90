"""Metrics, computed from the run store alone.

Per-class precision, recall, F1 and support, the macro and weighted averages and accuracy
follow scikit-learn's `classification_report` (zero_division=0). A prediction that is no class —
an *invalid* answer, or binary's explicit `(none)` — counts as wrong: it lowers its true class's
recall and no class's precision, and sits in the confusion matrix's last column. `invalid`
counts only the answers that named no class (status `invalid`). Images
that could not be read are not scored; they are counted and listed. Intervals are 95% percentile
bootstrap intervals over images (1,000 resamples, fixed seed), so they reproduce exactly.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classbench import usage
from classbench.calibration import expected_calibration_error, top_k_accuracy
from classbench.records import MODEL_ERROR, Prediction, RunRecords
from classbench.spec import stored
from classbench.store import Store

NO_CLASS = "(no class)"
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes; column `n_classes` is `invalid`."""
    matrix = np.zeros((n_classes, n_classes + 1), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def report_from_confusion(matrix: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    n = len(classes)
    tp = np.diag(matrix[:, :n]).astype(float)
    predicted = matrix[:, :n].sum(axis=0).astype(float)
    support = matrix.sum(axis=1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(n), where=denominator > 0)
    total = support.sum()
    weights = support / total if total else np.zeros(n)
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1-score": float(f1[i]),
               "support": int(support[i])}
        for i, name in enumerate(classes)
    }
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                      "f1-score": float(f1.mean()), "support": int(total)},
        "weighted_avg": {"precision": float(weights @ precision), "recall": float(weights @ recall),
                         "f1-score": float(weights @ f1), "support": int(total)},
        "per_class": per_class,
    }


def bootstrap(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, list[float] | None]:
    """95% intervals for accuracy and macro F1, vectorised over resamples."""
    n = len(y_true)
    if n == 0:
        return {"accuracy": None, "macro_f1": None}
    rng = np.random.default_rng(seed)
    accuracies, macro_f1s = [], []
    for start in range(0, resamples, 100):
        size = min(100, resamples - start)
        picks = rng.integers(0, n, size=(size, n))
        true, pred = y_true[picks], y_pred[picks]
        correct = true == pred
        accuracies.append(correct.mean(axis=1))
        offsets = (np.arange(size) * (n_classes + 1))[:, None]
        width = size * (n_classes + 1)
        tp = np.bincount((true + offsets)[correct], minlength=width).reshape(size, -1)[:, :n_classes]
        support = np.bincount((true + offsets).ravel(), minlength=width).reshape(size, -1)[:, :n_classes]
        predicted = np.bincount((pred + offsets).ravel(), minlength=width).reshape(size, -1)[:, :n_classes]
        precision = np.divide(tp, predicted, out=np.zeros(tp.shape), where=predicted > 0)
        recall = np.divide(tp, support, out=np.zeros(tp.shape), where=support > 0)
        denominator = precision + recall
        f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(tp.shape), where=denominator > 0)
        macro_f1s.append(f1.mean(axis=1))
    return {"accuracy": _interval(np.concatenate(accuracies)), "macro_f1": _interval(np.concatenate(macro_f1s))}


def _interval(values: np.ndarray) -> list[float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def compute(store: Store, predictions: list[Prediction] | None = None) -> dict[str, Any]:
    """The run's metrics; `predictions` when the caller has already read them (`store.predictions()`)."""
    classes: list[str] = store.meta("classes")
    spec = stored(store.meta("spec"))
    if predictions is None:
        predictions = store.predictions()
    scored = [p for p in predictions if p.status != "failed"]
    index = {name: i for i, name in enumerate(classes)}
    y_true = np.array([index[p.label] for p in scored], dtype=np.int64)
    y_pred = np.array([index.get(p.prediction, len(classes)) if p.prediction is not None else len(classes)
                       for p in scored], dtype=np.int64)
    matrix = confusion(y_true, y_pred, len(classes))
    report = report_from_confusion(matrix, classes)
    intervals = bootstrap(y_true, y_pred, len(classes))
    failed = [p for p in predictions if p.status == "failed"]
    n_samples = len(store.samples())
    model = store.meta("model") or {}
    return {
        "model": model.get("model_id") or spec.get("model", {}).get("name"),
        "model_revision": model.get("revision"),
        "strategy": spec.get("strategy", {}).get("name"),
        "dataset": spec.get("dataset", {}).get("source"),
        "n_classes": len(classes),
        "classes": classes,
        "background": store.meta("background"),
        "seed": spec.get("sample", {}).get("seed", 0),
        "n_samples": n_samples,
        "n_images": len(scored),
        "n_failed": len(failed),
        "complete": len(predictions) == n_samples and not any(_retryable(p) for p in failed),
        "accuracy": report["accuracy"],
        "accuracy_ci95": intervals["accuracy"],
        "macro_avg": report["macro_avg"],
        "macro_f1_ci95": intervals["macro_f1"],
        "weighted_avg": report["weighted_avg"],
        "top5_accuracy": top_k_accuracy(scored, index, 5),
        "ece": expected_calibration_error(scored, index),
        "invalid": sum(p.status == "invalid" for p in scored),
        "per_class": report["per_class"],
        "confusion_matrix": {"labels": classes, "columns": [*classes, NO_CLASS], "matrix": matrix.tolist()},
        **_speed(store, scored),
        "execution": _execution(store),
        "failures": [{"image": p.image, "error": p.error} for p in failed[:200]],
        **usage.summary(store, len(scored)),
        "strategy_summary": _strategy_summary(store, spec.get("strategy", {}).get("name"), classes, predictions),
        "spec": spec,
    }


def _strategy_summary(store: Store, name: str | None, classes: list[str],
                      predictions: list[Prediction]) -> dict[str, Any] | None:
    """A strategy's own figures (vote agreement, questions per image, …), as its registry entry declares."""
    from classbench import strategies

    if name not in strategies.REGISTRY or strategies.REGISTRY[name].summary is None:
        return None
    records = RunRecords(classes=classes, background=store.meta("background"), strategy=store.meta("strategy") or {},
                         questions=list(store.all_questions()), predictions=predictions)
    return strategies.summarise(name, records)


def _retryable(prediction: Prediction) -> bool:
    return (prediction.error or "").startswith(MODEL_ERROR)


def _speed(store: Store, scored: list[Prediction]) -> dict[str, Any]:
    sessions = store.sessions()
    images = sum(s["n_images"] for s in sessions)
    seconds = sum(s["inference_s"] for s in sessions)
    latencies = [p.latency_s for p in scored if p.latency_s is not None]
    gpu = [s["peak_gpu_gb"] for s in sessions if s["peak_gpu_gb"] is not None]
    rss = [s["peak_rss_gb"] for s in sessions if s["peak_rss_gb"] is not None]
    return {
        "images_per_s": round(images / seconds, 3) if seconds > 0 else None,
        "inference_s": round(seconds, 3),
        "load_s": round(max(s["load_s"] for s in sessions), 3) if sessions else None,
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "peak_gpu_gb": max(gpu) if gpu else None,
        "peak_rss_gb": max(rss) if rss else None,
        "sessions": len(sessions),
    }


def _execution(store: Store) -> dict[str, Any] | None:
    """How the latest session ran: executor, workers, GPUs, images/s over its wall clock and per worker."""
    sessions = store.meta("execution") or {}
    return sessions[max(sessions, key=int)] if sessions else None


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 6) if values else None


def write_folder(folder: Path) -> dict[str, Any]:
    """Recompute a run folder's metrics.json and predictions.csv from its store; return the metrics."""
    store = Store.open_existing(folder)
    try:
        return write(store, folder)
    finally:
        store.close()


def write(store: Store, out: Path) -> dict[str, Any]:
    """Write metrics.json and predictions.csv beside the store; both are derived, never read back."""
    predictions = store.predictions()
    metrics = compute(store, predictions)
    (out / "metrics.json").write_text(json.dumps(_finite(metrics), indent=1, ensure_ascii=False) + "\n")
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "prediction", "status", "latency_s", "error"])
        for p in predictions:
            writer.writerow([p.image, p.label, p.prediction or "", p.status,
                             "" if p.latency_s is None else f"{p.latency_s:.6f}", p.error or ""])
    return metrics


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
