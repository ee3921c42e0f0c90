"""Metrics equal scikit-learn's classification report; intervals reproduce and bracket the estimate."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st
from sklearn.metrics import accuracy_score, classification_report

from classbench.metrics import bootstrap, confusion, report_from_confusion


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n_classes=st.integers(1, 8), n=st.integers(1, 120))
def test_report_equals_scikit_learn(data: st.DataObject, n_classes: int, n: int) -> None:
    classes = [f"c{i}" for i in range(n_classes)]
    y_true = data.draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n))
    # n_classes stands for an invalid answer
    y_pred = data.draw(st.lists(st.integers(0, n_classes), min_size=n, max_size=n))
    ours = report_from_confusion(confusion(y_true, y_pred, n_classes), classes)
    names = classes + ["(invalid)"]
    true_names = [names[i] for i in y_true]
    pred_names = [names[i] for i in y_pred]
    theirs = classification_report(true_names, pred_names, labels=classes, output_dict=True, zero_division=0)
    for name in classes:
        for key in ("precision", "recall", "f1-score", "support"):
            assert np.isclose(ours["per_class"][name][key], theirs[name][key]), (name, key)
    for ours_key, theirs_key in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        for key in ("precision", "recall", "f1-score"):
            assert np.isclose(ours[ours_key][key], theirs[theirs_key][key]), (ours_key, key)
    assert np.isclose(ours["accuracy"], accuracy_score(true_names, pred_names))


def test_bootstrap_is_reproducible_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 6, 300))
    first = bootstrap(y_true, y_pred, 5)
    assert first == bootstrap(y_true, y_pred, 5)
    accuracy = float(np.mean(y_true == y_pred))
    low, high = first["accuracy"]
    assert low < accuracy < high and high - low < 0.15
    macro = report_from_confusion(confusion(y_true, y_pred, 5), list("abcde"))["macro_avg"]["f1-score"]
    assert first["macro_f1"][0] < macro < first["macro_f1"][1]


def test_bootstrap_macro_f1_matches_a_direct_computation() -> None:
    """The vectorised resampling computes the same macro F1 as the plain report on each resample."""
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 4, 50)
    y_pred = rng.integers(0, 5, 50)
    picks = np.random.default_rng(0).integers(0, 50, size=(100, 50))
    direct = [report_from_confusion(confusion(y_true[p], y_pred[p], 4), list("abcd"))["macro_avg"]["f1-score"]
              for p in picks]
    interval = bootstrap(y_true, y_pred, 4, resamples=100, seed=0)["macro_f1"]
    assert np.allclose(interval, np.percentile(direct, [2.5, 97.5]))
