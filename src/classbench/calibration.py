"""Scores as probabilities: top-k accuracy and calibration, for strategies that store a score per class.

Kept apart from `metrics` so a strategy's summary can use them without importing the metrics
module that reads its summary.
"""

from __future__ import annotations

import numpy as np

from classbench.records import Prediction


def class_scores(scored: list[Prediction]) -> list[np.ndarray] | None:
    """Each image's per-class scores (class order), when the strategy stored them for every image."""
    if not scored or any(not (p.detail and "scores" in p.detail) for p in scored):
        return None
    return [np.asarray(p.detail["scores"], dtype=float) for p in scored]


def top_k_accuracy(scored: list[Prediction], index: dict[str, int], k: int) -> float | None:
    """Top-k accuracy where the strategy stored a score per class; None otherwise."""
    scores = class_scores(scored)
    if scores is None or len(index) <= k:
        return None
    return float(np.mean([index[p.label] in np.argsort(-row)[:k] for row, p in zip(scores, scored)]))


ECE_BINS = 15


def expected_calibration_error(scored: list[Prediction], index: dict[str, int], bins: int = ECE_BINS) -> float | None:
    """Expected calibration error where the strategy stored a probability per class; None otherwise.

    The confidence is the top class's probability; images fall into `bins` equal-width bins over
    (0, 1] (bin i holds (i/bins, (i+1)/bins]); ECE is the image-weighted mean over bins of
    |accuracy − mean confidence| (Guo et al., 2017). Correct means the true class has the top
    probability (the first listed among ties), as the strategies that store scores predict.
    """
    probabilities = class_scores(scored)
    if probabilities is None:
        return None
    confidence = np.array([row.max() for row in probabilities])
    correct = np.array([int(np.argmax(row)) == index[p.label] for row, p in zip(probabilities, scored)])
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.sum() / len(scored) * abs(correct[members].mean() - confidence[members].mean())
    return float(error)
