"""The HTML report: one self-contained file a person opens to see which model to pick, and why.

Self-contained means nothing is fetched: CSS and the sorting script are inline, plots are SVG and
thumbnails PNG as `data:` URIs. A Content-Security-Policy allows exactly that (images from `data:`,
the one script and style by hash), so even a string that slipped past escaping could neither run
nor load anything. Every string that came from a user (class names, answers, paths, model names)
reaches the page through Jinja2's autoescaping; nothing user-made is placed in the script.

The plots are also saved as PNG and SVG beside the HTML file (FILE-plots/), for slides and papers.
Metrics are recomputed from each run's store; the misclassified gallery reads the raw answers from
the store and the images from the dataset named in the stored spec (when it is still there).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import importlib.resources
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classbench.errors import UserError
from classbench.report import compare as comparing
from classbench.report import plots
from classbench.report.leaderboard import load_metrics
from classbench.spec import flat_view
from classbench.store import STORE_NAME, Store
from classbench.sweep import slug

GALLERY_SIZE = 24
THUMBNAIL_PX = 96
ANSWER_CHARS = 300
CONFUSED_PAIRS = 12
MANY_CLASSES = 10
"""Above this, the most-confused pairs are listed beside the heatmap, which gets hard to read."""


@dataclass
class Figure:
    name: str
    title: str
    src: str
    files: list[str]


@dataclass
class RunView:
    anchor: str
    title: str
    folder: str
    metrics: dict[str, Any]
    plots: list[Figure] = field(default_factory=list)
    confused: list[dict[str, Any]] = field(default_factory=list)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    strategy_rows: list[tuple[str, str]] = field(default_factory=list)
    gallery: list[dict[str, Any]] = field(default_factory=list)
    gallery_note: str | None = None


def write(folders: Sequence[Path], out_file: Path, results: Sequence[dict[str, Any]] | None = None) -> Path:
    """Write the report to `out_file` and its plots to `<stem>-plots/` beside it.

    `results` are the folders' metrics when the caller has them already (computed otherwise)."""
    if out_file.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--html {out_file}: the report file should end in .html")
    if out_file.is_dir():
        raise UserError(f"--html {out_file}: is a folder; give a file name such as report.html")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    plots_dir = out_file.with_name(out_file.stem + "-plots")
    plots_dir.mkdir(exist_ok=True)
    out_file.write_text(render(folders, plots_dir, results), encoding="utf-8")
    return out_file


def render(folders: Sequence[Path], plots_dir: Path, results: Sequence[dict[str, Any]] | None = None) -> str:
    import jinja2

    results = list(results) if results is not None else [load_metrics(folder) for folder in folders]
    runs = [RunView(anchor=f"run-{index + 1}", title=_title(m), folder=str(folder), metrics=m)
            for index, (folder, m) in enumerate(zip(folders, results))]
    saver = _Saver(plots_dir)
    overview = [figure for figure in (
        saver.save("accuracy-vs-classes", "Accuracy against the number of classes",
                   plots.accuracy_vs_classes(_groups(results))),
        saver.save("speed-vs-accuracy", "Speed against accuracy",
                   plots.speed_vs_accuracy(results, [f"{_short(m)} · N={m.get('n_classes')}" for m in results])),
    ) if figure is not None]
    datasets = _Datasets()
    for index, (folder, run) in enumerate(zip(folders, runs)):
        _detail(run, folder, f"{index + 1:02d}-{slug(str(run.metrics.get('model')))}-"
                f"{slug(str(run.metrics.get('strategy')))}-n{run.metrics.get('n_classes')}", saver, datasets)
    assets = importlib.resources.files("classbench.report") / "templates"
    script = (assets / "report.js").read_text(encoding="utf-8")
    style = (assets / "report.css").read_text(encoding="utf-8")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                                     lstrip_blocks=True)
    template = environment.from_string((assets / "report.html.j2").read_text(encoding="utf-8"))
    return template.render(
        runs=runs,
        overview=overview,
        comparisons=_comparisons(folders, runs),
        script=script,
        style=style,
        script_hash=_csp_hash(script),
        style_hash=_csp_hash(style),
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        plots_dir=str(plots_dir),
        fmt=_format,
    )


def _detail(run: RunView, folder: Path, name: str, saver: _Saver, datasets: _Datasets) -> None:
    m = run.metrics
    run.plots = [figure for figure in (
        saver.save(f"{name}-confusion", "Confusion matrix", plots.confusion(m)),
        saver.save(f"{name}-per-class-f1", "F1 per class", plots.per_class_f1(m)),
    ) if figure is not None]
    if len(m["confusion_matrix"]["labels"]) > MANY_CLASSES:
        run.confused = most_confused(m)
    run.per_class = [{"name": name_, **values} for name_, values in m["per_class"].items()]
    summary = m.get("strategy_summary")
    if isinstance(summary, dict):
        run.strategy_rows = _flatten(summary)
        bias = summary.get("positional_bias")
        if isinstance(bias, dict):
            figure = saver.save(f"{name}-positional-bias", "Closed-set positional bias", plots.positional_bias(bias))
            if figure is not None:
                run.plots.append(figure)
    run.gallery, run.gallery_note = _gallery(folder, m, datasets)


def most_confused(metrics: dict[str, Any], limit: int = CONFUSED_PAIRS) -> list[dict[str, Any]]:
    """The largest off-diagonal cells: true class, predicted class (or invalid), count, share of the true class."""
    data = metrics["confusion_matrix"]
    pairs = []
    for row, (label, counts) in enumerate(zip(data["labels"], data["matrix"])):
        total = sum(counts)
        for column, count in enumerate(counts):
            if column != row and count:
                pairs.append({"true": label, "predicted": data["columns"][column], "count": count,
                              "share": count / total})
    pairs.sort(key=lambda pair: (-pair["count"], pair["true"], pair["predicted"]))
    return pairs[:limit]


def _gallery(folder: Path, metrics: dict[str, Any], datasets: _Datasets) -> tuple[list[dict[str, Any]], str | None]:
    if not (folder / STORE_NAME).is_file():
        return [], "no run.sqlite in this folder, so no images or raw answers to show"
    store = Store.open_existing(folder, read_only=True)
    try:
        wrong = [p for p in store.predictions() if p.status != "failed" and p.prediction != p.label]
        chosen = wrong[:GALLERY_SIZE]
        wanted = {p.image for p in chosen}
        answers = {image: [_clip(f"{key}: {question.answer}") for key, question in asked.items()]
                   for image, asked in store.questions_for(wanted).items()}
        spec = flat_view(store.meta("spec"))
    finally:
        store.close()
    if not wrong:
        return [], "no misclassified images"
    dataset, problem = datasets.open(spec)
    tiles = []
    for p in chosen:
        thumbnail = None
        if dataset is not None:
            thumbnail = _thumbnail(dataset, p.image, p.label)
        tiles.append({"image": p.image, "label": p.label, "prediction": p.prediction or "(invalid)",
                      "answers": answers[p.image], "src": thumbnail})
    note = f"the first {len(chosen)} of {len(wrong)} misclassified images" if len(wrong) > len(chosen) else None
    if problem:
        note = f"images not shown: {problem}"
    return tiles, note


class _Datasets:
    """Datasets opened once per report: the points of a sweep share one."""

    def __init__(self) -> None:
        self.opened: dict[tuple, tuple[Any, str | None]] = {}

    def open(self, spec: dict[str, Any]) -> tuple[Any, str | None]:
        from classbench.datasets import open_dataset

        key = tuple(spec.get(name) for name in ("dataset", "label_file", "split", "image_column", "label_column",
                                                 "dataset_root"))
        if key not in self.opened:
            try:
                self.opened[key] = (open_dataset(key[0], label_file=key[1], split=key[2], image_column=key[3],
                                                 label_column=key[4], dataset_root=key[5]), None)
            except UserError as error:
                self.opened[key] = (None, str(error))
            except Exception as error:  # an optional extra: the gallery goes, the report stays
                self.opened[key] = (None, f"{type(error).__name__}: {error}")
        return self.opened[key]


def _thumbnail(dataset: Any, image: str, label: str) -> str | None:
    from classbench.datasets import Sample
    from classbench.errors import ImageLoadError

    try:
        picture = dataset.load(Sample(image, label))
    except (ImageLoadError, OSError, KeyError, IndexError):
        return None
    picture = picture.convert("RGB")
    picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class _Saver:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, name: str, title: str, figure: Any | None) -> Figure | None:
        if figure is None:
            return None
        rendered = plots.render(figure)
        files = []
        for suffix, data in (("png", rendered.png), ("svg", rendered.svg)):
            path = self.folder / f"{name}.{suffix}"
            path.write_bytes(data)
            files.append(str(path))
        src = "data:image/svg+xml;base64," + base64.b64encode(rendered.svg).decode("ascii")
        return Figure(name, title, src, files)


def _comparisons(folders: Sequence[Path], runs: Sequence[RunView]) -> list[dict[str, Any]]:
    outcomes = []
    for folder in folders:
        try:
            outcomes.append(comparing.outcomes(folder))
        except UserError:
            outcomes.append({})
    rows = []
    for i, j in comparing.same_image_pairs(outcomes):
        result = comparing.compare_outcomes(outcomes[i], outcomes[j], runs[i].title, runs[j].title)
        rows.append({"a": runs[i], "b": runs[j], "result": result})
    return rows


def _groups(results: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Runs that differ only in their class count form one line; lines that share a model and
    strategy are told apart by the settings that differ (e.g. `map_threshold=0.3`)."""
    ignored = {"classes", "batch_size", "device"}
    groups: dict[str, list[dict[str, Any]]] = {}
    settings: dict[str, dict[str, Any]] = {}
    for m in results:
        spec = {key: value for key, value in flat_view(m.get("spec")).items() if key not in ignored}
        spec.update(model=m.get("model"), strategy=m.get("strategy"))
        key = json.dumps(spec, sort_keys=True, default=str)
        groups.setdefault(key, []).append(m)
        settings[key] = spec
    named = []
    for key, points in groups.items():
        name = _short(points[0])
        rivals = [settings[other] for other in groups if other != key and _short(groups[other][0]) == name]
        differing = sorted({field for rival in rivals for field in settings[key] if rival.get(field) != settings[key][field]})
        if differing:
            name += " (" + ", ".join(f"{field}={settings[key][field]}" for field in differing) + ")"
        named.append((name, points))
    return named


def _short(m: dict[str, Any]) -> str:
    return f"{m.get('model')} · {m.get('strategy')}"


def _title(m: dict[str, Any]) -> str:
    return f"{_short(m)} · {m.get('n_classes')} classes"


def _flatten(summary: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Scalar figures of a strategy summary as (name, value) rows; lists are drawn, not listed."""
    rows: list[tuple[str, str]] = []
    for key, value in summary.items():
        name = f"{prefix}{key}".replace("_", " ")
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, (list, tuple)):
            rows.append((name, _format(value)))
    return rows


def _format(value: Any, digits: int = 3) -> str:
    if value is None:
        return "N/A"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _clip(text: str) -> str:
    return text if len(text) <= ANSWER_CHARS else text[: ANSWER_CHARS - 1] + "…"


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
