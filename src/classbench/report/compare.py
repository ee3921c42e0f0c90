"""Paired comparison of two runs on the same images: is A really more accurate than B?

Two runs scored on the same images are paired: per image, A is right or wrong and so is B. The
accuracy difference A − B is the mean of the per-image differences, and its 95% interval is a
paired percentile bootstrap (images resampled jointly, 10,000 resamples, fixed seed, so it
reproduces, and comparing B with A gives exactly the mirrored interval). Resampling images only
moves the three counts (A right and B wrong, A wrong and B right, agree), so each resample is one
multinomial draw: exact, and cheap at any size.

McNemar's test asks whether the discordant images split evenly: under "A and B are equally
accurate", A-right-B-wrong is Binomial(b + c, 1/2). The p-value is the exact two-sided binomial
(scipy's `binomtest`; scipy is always present, scikit-learn needs it), valid at any size, unlike
the chi-square approximation that needs many discordant pairs.

Only images both runs scored are compared (failed images are left out); an image whose label
differs between the runs means they are not on the same data, and is refused.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from classbench.errors import UserError
from classbench.store import STORE_NAME, Store

RESAMPLES = 10_000
SEED = 0


@dataclass(frozen=True)
class Comparison:
    name_a: str
    name_b: str
    n: int
    """Images both runs scored."""
    n_a: int
    n_b: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    """accuracy A − accuracy B on the shared images."""
    ci95: tuple[float, float]
    a_only: int
    """A right, B wrong."""
    b_only: int
    """A wrong, B right."""
    p_value: float
    """McNemar's exact test, two-sided."""
    note: str | None = None
    """A caution the figures need (the runs name different datasets)."""


def outcomes(folder: Path) -> dict[str, tuple[str, bool]]:
    """Per scored image: its label and whether the run got it right (from the store, else predictions.csv)."""
    if (folder / STORE_NAME).is_file():
        store = Store.open_existing(folder, read_only=True)
        try:
            return {p.image: (p.label, p.prediction == p.label) for p in store.predictions(details=False) if p.status != "failed"}
        finally:
            store.close()
    path = folder / "predictions.csv"
    if not path.is_file():
        raise UserError(f"{folder}: no {STORE_NAME} or predictions.csv to compare image by image")
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["image"]: (row["label"], row["prediction"] == row["label"])
                for row in csv.DictReader(handle) if row.get("status") != "failed"}


def paired(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, tuple[float, float], int, int, float]:
    """Difference, its paired bootstrap interval, the discordant counts and McNemar's exact p-value."""
    from scipy.stats import binomtest

    n = len(correct_a)
    a_only = int(np.sum(correct_a & ~correct_b))
    b_only = int(np.sum(~correct_a & correct_b))
    difference = (a_only - b_only) / n
    # Draw the smaller discordant count first, so comparing B with A mirrors A with B exactly.
    first, second = sorted((a_only, b_only))
    draws = np.random.default_rng(SEED).multinomial(n, [first / n, second / n, 1 - (first + second) / n],
                                                    size=RESAMPLES)
    sign = 1 if a_only <= b_only else -1
    low, high = np.percentile(sign * (draws[:, 0] - draws[:, 1]) / n, [2.5, 97.5])
    p_value = 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return difference, (float(low), float(high)), a_only, b_only, min(1.0, p_value)


def compare(folder_a: Path, folder_b: Path, name_a: str | None = None, name_b: str | None = None) -> Comparison:
    result = compare_outcomes(outcomes(folder_a), outcomes(folder_b), name_a or str(folder_a), name_b or str(folder_b))
    sources = _dataset_source(folder_a), _dataset_source(folder_b)
    if None not in sources and sources[0] != sources[1]:  # same file names need not be the same images
        return replace(result, note=f"A ran on the dataset {sources[0]} and B on {sources[1]}: the images are paired "
                                    "by file name, so check that both hold the same images")
    return result


def _dataset_source(folder: Path) -> str | None:
    """The dataset a run names (its source path or name), from its store or metrics.json."""
    from classbench.spec import stored

    try:
        if (folder / STORE_NAME).is_file():
            store = Store.open_existing(folder, read_only=True)
            try:
                return stored(store.meta("spec")).get("dataset", {}).get("source")
            finally:
                store.close()
        import json

        return json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("dataset")
    except (OSError, ValueError, AttributeError, UserError):
        return None


def compare_outcomes(first: dict[str, tuple[str, bool]], second: dict[str, tuple[str, bool]],
                     name_a: str, name_b: str) -> Comparison:
    shared = [image for image in first if image in second]
    if not shared:
        raise UserError(f"{name_a} and {name_b} share no scored images: a paired comparison needs two runs on "
                        "the same images (same dataset, --classes, --per-class and --seed)")
    mismatched = [image for image in shared if first[image][0] != second[image][0]]
    if mismatched:
        raise UserError(f"{name_a} and {name_b} give {mismatched[0]} different labels "
                        f"({first[mismatched[0]][0]!r} and {second[mismatched[0]][0]!r}): they are not runs on the "
                        "same data")
    correct_a = np.array([first[image][1] for image in shared], dtype=bool)
    correct_b = np.array([second[image][1] for image in shared], dtype=bool)
    difference, ci95, a_only, b_only, p_value = paired(correct_a, correct_b)
    return Comparison(name_a, name_b, len(shared), len(first), len(second), float(correct_a.mean()),
                      float(correct_b.mean()), difference, ci95, a_only, b_only, p_value)


def same_image_pairs(runs: Sequence[dict[str, tuple[str, bool]]], limit: int = 50) -> list[tuple[int, int]]:
    """Index pairs of runs that scored exactly the same images (the pairs worth comparing), at most `limit`."""
    images = [frozenset((image, label) for image, (label, _) in run.items()) for run in runs]
    pairs = [(i, j) for i in range(len(runs)) for j in range(i + 1, len(runs)) if images[i] and images[i] == images[j]]
    return pairs[:limit]


def markdown(comparison: Comparison) -> str:
    c = comparison
    lines = [
        "| run | accuracy on the shared images |",
        "|---|---|",
        f"| A: {_cell(c.name_a)} | {c.accuracy_a:.3f} |",
        f"| B: {_cell(c.name_b)} | {c.accuracy_b:.3f} |",
        "",
        f"difference A − B: {c.difference:+.3f}, 95% paired bootstrap interval [{c.ci95[0]:+.3f}, {c.ci95[1]:+.3f}] "
        f"({RESAMPLES:,} resamples)",
        f"McNemar's exact test: p = {c.p_value:.4g} (A right and B wrong on {c.a_only} images, "
        f"A wrong and B right on {c.b_only})",
        f"compared on the {c.n} images both runs scored" + (
            f" (A scored {c.n_a}, B scored {c.n_b})" if (c.n_a, c.n_b) != (c.n, c.n) else ""),
    ]
    if c.note:
        lines.append(f"note: {c.note}")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
