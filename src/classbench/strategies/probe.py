"""The `probe` strategy: logistic regression on frozen image features, fitted on K shots per class.

It is the cheap baseline a VLM has to beat: a handful of labelled images per class and any
backend that can `embed` (a CLIP image tower, an ImageNet network's penultimate layer). The shots
come from the sampler (the first K of each class's seeded order), so they are never evaluated.

The probe is fitted once per run folder and saved there (`probe.npz`, `probe_split.json` with
every shot image and any that could not be read), so a resumed run predicts with the very same
probe even on another device, and the run can be reproduced or audited. Features are
standardised on the shots (their scales differ by orders of magnitude across backends), and the
L2 penalty is scikit-learn's `C` (inverse strength). C is tuned as CLIP_benchmark and the CLIP
paper tune their probes' regularisation, on the training data alone: seeded stratified k-fold
cross-validation on the shots (k = min(5, shots per class)) over a log grid, the best mean fold
accuracy winning (ties: lower mean log-loss, then the smaller C). With one shot per class nothing
can be held out and C is scikit-learn's default 1.0. `--option C=…` fixes it. The choice and every
fold score are recorded in probe_split.json, and the chosen C in metrics.json.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from classbench.datasets.base import Sample
from classbench.errors import ImageLoadError, UserError
from classbench.records import RunRecords
from classbench.settings import Settings, option_only
from classbench.strategies.base import Context, Item, Step, Strategy, scored_steps

KEY = "probe"
PROBE_FILE = "probe.npz"
SPLIT_FILE = "probe_split.json"
DEFAULT_C = 1.0
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
MAX_FOLDS = 5
MAX_ITER = 2000
FIXED = "--option C"


class ProbeSettings(Settings):
    C: float | None = option_only(None, "the logistic regression's inverse regularisation strength [default: "
                                        "chosen by seeded stratified cross-validation on the shots]", gt=0)


class Probe(Strategy[ProbeSettings]):
    name = "probe"
    needs = "embed"
    atomic_chunks = True

    def __init__(self, model: Any, settings: ProbeSettings, context: Context) -> None:
        super().__init__(model, settings, context)
        if not context.shots or context.load_image is None:
            raise UserError("--strategy probe learns from labelled images held out of the evaluation set: "
                            "pass --shots K (K ≥ 1 images per class)")
        self.C = settings.C
        """The C the user fixed; None: chosen by cross-validation on the shots when the probe is fitted."""
        self.folder = Path(context.out) if context.out is not None else None
        started = perf_counter()
        saved = self._load()
        self.reused = saved is not None
        if saved is None:
            saved = self._fit()
        self.weights, self.split = saved
        self.fit_s = round(perf_counter() - started, 3)
        self.columns = [context.classes.index(name) for name in self.weights["classes"]]

    def describe(self) -> dict[str, Any]:
        choice = self.split.get("C") or {"chosen_by": "default"}
        return {"name": self.name, "C": float(self.weights["C"]), "C_chosen_by": choice["chosen_by"],
                "shots_per_class": self.split["shots_per_class"],
                "n_shots": len(self.split["shots"]), "skipped_shots": self.split["skipped"],
                "probe_file": PROBE_FILE, "split_file": SPLIT_FILE, "reused_probe": self.reused,
                "fit_s": self.fit_s}

    def run(self, items: Sequence[Item]) -> Iterator[Step]:
        if not items:
            return
        started = perf_counter()
        probabilities = self._predict(self.model.embed([item.image for item in items]))
        latency = (perf_counter() - started) / len(items)
        classes = self.context.classes
        yield from scored_steps(items, KEY, classes, probabilities, classes, probabilities, latency)

    def _predict(self, features: np.ndarray) -> np.ndarray:
        """Probabilities over all target classes; a class without usable shots gets zero."""
        weights = self.weights
        if features.shape[1] != weights["mean"].shape[0]:
            raise UserError(f"{self.folder / PROBE_FILE}: the saved probe takes {weights['mean'].shape[0]} features "
                            f"but {self.model.model_id} gives {features.shape[1]}; use a new --out folder")
        logits = ((features - weights["mean"]) / weights["scale"]) @ weights["coef"].T + weights["intercept"]
        if logits.shape[1] == 1:
            logits = np.concatenate([np.zeros_like(logits), logits], axis=1)
        logits = logits - logits.max(axis=1, keepdims=True)
        fitted = np.exp(logits)
        fitted /= fitted.sum(axis=1, keepdims=True)
        probabilities = np.zeros((len(features), len(self.context.classes)))
        probabilities[:, self.columns] = fitted
        return probabilities

    def _fit(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        features, labels, used, skipped = self._embed_shots()
        if len(set(labels)) < 2:
            raise UserError(f"--strategy probe: only {len(used)} readable shot image(s), of "
                            f"{len(set(labels))} class(es); a probe needs shots of at least two classes "
                            "(raise --shots, or check the images listed in probe_split.json)")
        C, choice = (self.C, {"chosen_by": FIXED, "value": self.C}) if self.C is not None else \
            _cross_validate(features, np.array(labels), self.context.seed)
        scaler = StandardScaler().fit(features)
        classifier = LogisticRegression(C=C, max_iter=MAX_ITER, random_state=self.context.seed)
        classifier.fit(scaler.transform(features), labels)
        weights = {
            "mean": scaler.mean_, "scale": scaler.scale_, "coef": classifier.coef_,
            "intercept": classifier.intercept_, "classes": np.array([str(name) for name in classifier.classes_]),
            "C": np.array(C),
        }
        split = {
            "model": self._model_key(),
            "seed": self.context.seed,
            "C": choice,
            "shots_per_class": dict(sorted(Counter(sample.label for sample in self.context.shots).items())),
            "shots": [{"image": sample.id, "label": sample.label} for sample in used],
            "skipped": [{"image": sample.id, "label": sample.label, "error": error} for sample, error in skipped],
        }
        if self.folder is not None:
            _write_json(self.folder / SPLIT_FILE, split)
            _write_npz(self.folder / PROBE_FILE, weights)
        return weights, split

    def _embed_shots(self) -> tuple[np.ndarray, list[str], list[Sample], list[tuple[Sample, str]]]:
        """Embed the shots in batches; an unreadable shot is skipped and noted, not fatal."""
        used: list[Sample] = []
        skipped: list[tuple[Sample, str]] = []
        parts: list[np.ndarray] = []
        shots = list(self.context.shots)
        for start in range(0, len(shots), self.context.batch_size):
            images, batch = [], []
            for sample in shots[start:start + self.context.batch_size]:
                try:
                    images.append(self.context.load_image(sample))
                    batch.append(sample)
                except ImageLoadError as error:
                    skipped.append((sample, str(error)))
            if images:
                parts.append(np.asarray(self.model.embed(images), dtype=np.float64))
                used.extend(batch)
        features = np.concatenate(parts) if parts else np.zeros((0, 0))
        return features, [sample.label for sample in used], used, skipped

    def _load(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The saved probe, if it was fitted on these shots with this model; None when there is none.

        A probe fitted with other weights is refused, never overwritten: it belongs to the answers
        already in the store (the runner refuses the changed model too, but only after this).
        """
        if self.folder is None or not (self.folder / PROBE_FILE).is_file() or not (self.folder / SPLIT_FILE).is_file():
            return None
        try:
            split = json.loads((self.folder / SPLIT_FILE).read_text(encoding="utf-8"))
            with np.load(self.folder / PROBE_FILE) as data:
                weights = {key: data[key] for key in data.files}
        except (OSError, ValueError, KeyError):
            return None
        if split.get("model") != self._model_key():
            raise UserError(f"{self.folder / PROBE_FILE} was fitted on features of {split.get('model')}, not "
                            f"{self._model_key()}; use a new --out folder for this model")
        listed = {entry["image"] for entry in (*split.get("shots", []), *split.get("skipped", []))}
        same_shots = listed == {sample.id for sample in self.context.shots}
        fixed = (split.get("C") or {}).get("chosen_by") == FIXED
        same_fit = float(weights.get("C", np.nan)) == self.C if self.C is not None else not fixed
        known = set(map(str, weights.get("classes", []))) <= set(self.context.classes)
        return (weights, split) if same_shots and same_fit and known else None

    def _model_key(self) -> dict[str, Any]:
        return {"model_id": self.model.model_id, "revision": self.model.revision}


def summarise(run: RunRecords) -> dict[str, Any] | None:
    """The probe's C and how it was chosen, for metrics.json."""
    described = run.strategy
    if "C" not in described:
        return None
    return {"C": described["C"], "C_chosen_by": described.get("C_chosen_by", "default"),
            "n_shots": described.get("n_shots")}


def summary_line(summary: dict[str, Any]) -> str:
    return f"probe: C = {summary['C']:g} ({summary['C_chosen_by']}), fitted on {summary['n_shots']} shots"


def _cross_validate(features: np.ndarray, labels: np.ndarray, seed: int) -> tuple[float, dict[str, Any]]:
    """C by seeded stratified k-fold cross-validation on the shots (scaler fitted inside each fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    folds = min(MAX_FOLDS, min(Counter(labels.tolist()).values()))
    if folds < 2:
        return DEFAULT_C, {"chosen_by": "default", "value": DEFAULT_C,
                           "reason": "fewer than 2 readable shots in some class: nothing to hold out"}
    accuracy = {C: [] for C in C_GRID}
    loss = {C: [] for C in C_GRID}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(features, labels):
        scaler = StandardScaler().fit(features[train])
        fit_x, test_x = scaler.transform(features[train]), scaler.transform(features[test])
        for C in C_GRID:
            classifier = LogisticRegression(C=C, max_iter=MAX_ITER, random_state=seed).fit(fit_x, labels[train])
            accuracy[C].append(float(np.mean(classifier.predict(test_x) == labels[test])))
            loss[C].append(float(log_loss(labels[test], classifier.predict_proba(test_x), labels=classifier.classes_)))
    mean_accuracy = {C: float(np.mean(values)) for C, values in accuracy.items()}
    mean_loss = {C: float(np.mean(values)) for C, values in loss.items()}
    best = min(C_GRID, key=lambda C: (-mean_accuracy[C], mean_loss[C], C))
    return best, {"chosen_by": "cross-validation", "value": best, "folds": folds, "grid": list(C_GRID),
                  "mean_accuracy": {f"{C:g}": round(mean_accuracy[C], 4) for C in C_GRID},
                  "mean_log_loss": {f"{C:g}": round(mean_loss[C], 4) for C in C_GRID}}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(path)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(temporary, **arrays)
    temporary.replace(path)
