"""Map a classifier's own labels (e.g. ImageNet's 1,000) onto the target classes of a benchmark.

The rule, in order; each source label goes to at most one target, the first rule that claims it
wins, and the probabilities of a target's source labels are summed:

1. file: an explicit mapping file (`--label-map`, YAML/JSON `target: [source names]`) decides
   for every target it names; the source labels it lists are taken from every other target.
2. exact: a source label's name or one of its synonyms equals the target name, compared after
   the answer-mapping normalisation (case, separators, plurals: `jersey, T-shirt` → `t shirt`).
   A target written with `/` names alternatives: `T-shirt/top` matches `T-shirt` and `top`.
3. head noun: a multi-word synonym whose last word is a one-word target's name (`tiger cat`,
   `Persian cat` → `cat`; `trench coat` → `coat`), when only one target has that name.
   Compound names that are not the thing (`hot dog`) are the known cost; see the written map.
4. similarity: the remaining source labels go to the target whose all-MiniLM-L6-v2 embedding is
   most similar to the label's synonyms, when the cosine similarity is at least the threshold
   (`--map-threshold`, default 0.5).
5. every target left with no source label receives its single most similar source label, so no
   class is impossible to predict.
6. background: when the target set has a background class, every source label still unmapped
   goes to it: an image that looks like nothing in the target set is background.

The resulting map is written to the run folder as `label_map.json`, readable and editable: pass
it back with `--label-map` to override.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classbench import safeyaml
from classbench.answers import normalise
from classbench.errors import UserError
from classbench.models.base import BackendLabel


@dataclass(frozen=True)
class LabelMap:
    targets: list[str]
    assignment: dict[int, tuple[int, str]]  # source index → (target index, rule)
    n_sources: int

    def matrix(self) -> np.ndarray:
        """A (sources × targets) 0/1 matrix: target scores = probabilities @ matrix."""
        out = np.zeros((self.n_sources, len(self.targets)), dtype=np.float32)
        for source, (target, _) in self.assignment.items():
            out[source, target] = 1.0
        return out

    def to_json(self, labels: Sequence[BackendLabel]) -> dict[str, list[dict[str, str]]]:
        by_target: dict[str, list[dict[str, str]]] = {name: [] for name in self.targets}
        for source, (target, rule) in sorted(self.assignment.items()):
            by_target[self.targets[target]].append({"label": labels[source].name, "rule": rule})
        return by_target


def build_label_map(
    labels: Sequence[BackendLabel],
    targets: Sequence[str],
    background: str | None = None,
    mapping_file: Path | None = None,
    threshold: float = 0.5,
) -> LabelMap:
    targets = list(targets)
    index_of_target = {name: i for i, name in enumerate(targets)}
    assignment: dict[int, tuple[int, str]] = {}
    fixed_targets: set[int] = set()

    if mapping_file is not None:
        for target, sources in _read_mapping_file(mapping_file, labels, targets).items():
            fixed_targets.add(index_of_target[target])
            for source in sources:
                assignment[source] = (index_of_target[target], "file")

    open_targets = [i for i, name in enumerate(targets) if i not in fixed_targets and name != background]
    alternatives = {i: {normalise(part) for part in targets[i].split("/") if part.strip()} | {normalise(targets[i])}
                    for i in open_targets}
    squashed = {i: {name.replace(" ", "") for name in names} for i, names in alternatives.items()}

    label_norms = [[normalise(name) for name in label.synonyms or (label.name,)] for label in labels]
    for source, names in enumerate(label_norms):
        if source in assignment:
            continue
        hits = {i for i in open_targets for name in names
                if name in alternatives[i] or name.replace(" ", "") in squashed[i]}
        if len(hits) == 1:
            assignment[source] = (hits.pop(), "exact")

    heads: dict[str, list[int]] = {}
    for i, names in alternatives.items():
        for name in names:
            if " " not in name:
                heads.setdefault(name, []).append(i)
    for source, names in enumerate(label_norms):
        if source in assignment:
            continue
        hits = {heads[name.rsplit(" ", 1)[1]][0] for name in names
                if " " in name and len(heads.get(name.rsplit(" ", 1)[1], [])) == 1}
        if len(hits) == 1:
            assignment[source] = (hits.pop(), "head noun")

    if open_targets:
        from classbench.text_embed import embed

        label_vectors = embed([", ".join(label.synonyms or (label.name,)) for label in labels])
        target_vectors = embed([targets[i] for i in open_targets])
        similarity = label_vectors @ target_vectors.T
        for source in range(len(labels)):
            if source in assignment:
                continue
            best = int(np.argmax(similarity[source]))
            if similarity[source, best] >= threshold:
                assignment[source] = (open_targets[best], "similarity")
        covered = {target for target, _ in assignment.values()}
        for column, target in enumerate(open_targets):
            if target in covered:
                continue
            order = np.argsort(-similarity[:, column])
            source = next((int(s) for s in order if assignment.get(int(s), (None, ""))[1] not in ("file", "exact")),
                          int(order[0]))
            assignment[source] = (target, "nearest")

    if background is not None and index_of_target[background] not in fixed_targets:
        for source in range(len(labels)):
            assignment.setdefault(source, (index_of_target[background], "background"))
    return LabelMap(targets=targets, assignment=assignment, n_sources=len(labels))


def _read_mapping_file(path: Path, labels: Sequence[BackendLabel], targets: list[str]) -> dict[str, list[int]]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else safeyaml.load(text, f"--label-map {path}")
    except OSError as error:
        raise UserError(f"--label-map {path}: {error.strerror}") from None
    except (ValueError, RecursionError) as error:
        raise UserError(f"--label-map {path}: cannot parse: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"--label-map {path}: expected `target class: [model label, …]`")
    by_name: dict[str, int] = {}
    for index, label in enumerate(labels):
        for name in (label.name, *label.synonyms):
            by_name.setdefault(name.lower(), index)
    result: dict[str, list[int]] = {}
    for target, sources in data.items():
        if target not in targets:
            raise UserError(f"--label-map {path}: {target!r} is not a target class of this run")
        items = sources if isinstance(sources, list) else [sources]
        indices = []
        for item in items:
            name = item.get("label") if isinstance(item, dict) else item
            if isinstance(name, int) and 0 <= name < len(labels):
                indices.append(name)
            elif isinstance(name, str) and name.lower() in by_name:
                indices.append(by_name[name.lower()])
            else:
                raise UserError(f"--label-map {path}: {name!r} (for {target!r}) is not a label of this model")
        result[target] = indices
    return result
