"""The HTML report: one self-contained file a person opens to see which model to pick, and why.

Self-contained means nothing is fetched: CSS and the page's script are inline, plots are inline
SVG or `data:` images, thumbnails PNG `data:` URIs. A Content-Security-Policy allows exactly that
(images from `data:`, the one script and style by hash), so even a string that slipped past
escaping could neither run nor load anything. Every string that came from a user (class names,
answers, paths, model names) reaches the page escaped (Jinja2's autoescaping, or `svgplots._esc`);
the script reads them only from data attributes and writes them only as text.

Each plot is drawn once, in the format the page embeds: a run's own plots as inline SVG
(`svgplots`, milliseconds each), the two sweep-wide plots with matplotlib in whichever format is
smaller for that kind of plot (lines: SVG; the annotated scatter: PNG). That file is also saved
beside the page (FILE-plots/); `formats` (`--plots png,svg`) asks for every plot in those formats
too, rendered with matplotlib where the page has no such rendering (for slides and papers).
Metrics are recomputed from each run's store; the gallery reads the store (see `gallery`).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import importlib.resources
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from classbench.errors import UserError
from classbench.report import compare as comparing
from classbench.report import plots, svgplots
from classbench.report.gallery import Thumbnails, gallery
from classbench.report.leaderboard import load_metrics
from classbench.spec import flat_view
from classbench.sweep import slug

CONFUSED_PAIRS = 12
FORMATS = ("png", "svg")
OVERVIEW_FORMAT = {"accuracy-vs-classes": "svg", "speed-vs-accuracy": "png"}
"""The smaller rendering of each sweep-wide plot (50 runs: 71 KB SVG vs 75 KB PNG for the lines,
208 KB SVG vs 129 KB PNG for the scatter, whose labels SVG draws as paths)."""


@dataclass
class Figure:
    name: str
    title: str
    src: str | None = None
    """A `data:` image (matplotlib's PNG or SVG), or None for an inline SVG."""
    inline: Markup | None = None
    """Inline SVG drawn by `svgplots`, escaped there."""
    data: Markup | None = None
    """The confusion matrix's data attributes (class names and counts) for the hover text."""
    files: list[str] = field(default_factory=list)


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


def parse_formats(text: str | None) -> frozenset[str]:
    """`--plots png,svg` → {"png", "svg"}: plot files wanted beside the page besides the embedded ones."""
    wanted = frozenset(part.strip().lower() for part in (text or "").split(",") if part.strip())
    unknown = sorted(wanted - set(FORMATS))
    if unknown:
        raise UserError(f"--plots {text}: unknown format {unknown[0]!r}; give png, svg or png,svg")
    return wanted


def write(folders: Sequence[Path], out_file: Path, results: Sequence[dict[str, Any]] | None = None,
          formats: frozenset[str] = frozenset()) -> Path:
    """Write the report to `out_file` and its plots to `<stem>-plots/` beside it.

    `results` are the folders' metrics when the caller has them already (computed otherwise)."""
    if out_file.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--html {out_file}: the report file should end in .html")
    if out_file.is_dir():
        raise UserError(f"--html {out_file}: is a folder; give a file name such as report.html")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    plots_dir = out_file.with_name(out_file.stem + "-plots")
    plots_dir.mkdir(exist_ok=True)
    out_file.write_text(render(folders, plots_dir, results, formats), encoding="utf-8")
    return out_file


def render(folders: Sequence[Path], plots_dir: Path, results: Sequence[dict[str, Any]] | None = None,
           formats: frozenset[str] = frozenset()) -> str:
    import jinja2

    results = list(results) if results is not None else [load_metrics(folder) for folder in folders]
    runs = [RunView(anchor=f"run-{index + 1}", title=_title(m), folder=str(folder), metrics=m)
            for index, (folder, m) in enumerate(zip(folders, results))]
    saver = _Saver(plots_dir, formats)
    names = [f"{_short(m)} · N={m.get('n_classes')}" for m in results]
    overview = [figure for figure in (
        saver.drawn("accuracy-vs-classes", "Accuracy against the number of classes",
                    lambda: plots.accuracy_vs_classes(_groups(results))),
        saver.drawn("speed-vs-accuracy", "Speed against accuracy", lambda: plots.speed_vs_accuracy(results, names)),
    ) if figure is not None]
    thumbnails = Thumbnails()
    for index, (folder, run) in enumerate(zip(folders, runs)):
        _detail(run, folder, f"{index + 1:02d}-{slug(str(run.metrics.get('model')))}-"
                f"{slug(str(run.metrics.get('strategy')))}-n{run.metrics.get('n_classes')}", saver, thumbnails)
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
        plot_formats=", ".join(sorted(formats)),
        fmt=_format,
    )


def _detail(run: RunView, folder: Path, name: str, saver: _Saver, thumbnails: Thumbnails) -> None:
    m = run.metrics
    run.confused = most_confused(m)
    run.plots = [
        saver.inline(f"{name}-confusion", "Confusion matrix", svgplots.confusion(m, run.confused),
                     lambda: plots.confusion(m), data=svgplots.confusion_data(m)),
        saver.inline(f"{name}-per-class-f1", "F1 per class", svgplots.per_class_f1(m), lambda: plots.per_class_f1(m)),
    ]
    run.per_class = [{"name": name_, **values} for name_, values in m["per_class"].items()]
    summary = m.get("strategy_summary")
    if isinstance(summary, dict):
        run.strategy_rows = _flatten(summary)
        bias = summary.get("positional_bias")
        drawn = svgplots.positional_bias(bias) if isinstance(bias, dict) else None
        if drawn is not None:
            run.plots.append(saver.inline(f"{name}-positional-bias", "Closed-set positional bias", drawn,
                                          lambda: plots.positional_bias(bias)))
    run.gallery, run.gallery_note = gallery(folder, thumbnails)


def most_confused(metrics: dict[str, Any], limit: int = CONFUSED_PAIRS) -> list[dict[str, Any]]:
    """The largest off-diagonal cells: true class, predicted class (or no class), count, share of the
    true class, and the cell's row and column."""
    data = metrics["confusion_matrix"]
    pairs = []
    for row, (label, counts) in enumerate(zip(data["labels"], data["matrix"])):
        total = sum(counts)
        for column, count in enumerate(counts):
            if column != row and count:
                pairs.append({"true": label, "predicted": data["columns"][column], "count": count,
                              "share": count / total, "row": row, "column": column})
    pairs.sort(key=lambda pair: (-pair["count"], pair["true"], pair["predicted"]))
    return pairs[:limit]


class _Saver:
    """Draws each plot once for the page, saves it beside the page, and renders other formats on request."""

    def __init__(self, folder: Path, formats: frozenset[str]) -> None:
        self.folder = folder
        self.formats = formats

    def drawn(self, name: str, title: str, build: Callable[[], Any]) -> Figure | None:
        """A matplotlib figure, embedded in the smaller format for its kind."""
        figure = build()
        if figure is None:
            return None
        embedded = OVERVIEW_FORMAT[name]
        data = plots.render(figure, embedded)
        files = [self._write(name, embedded, data)]
        files += [self._write(name, suffix, plots.render(figure, suffix))
                  for suffix in sorted(self.formats - {embedded})]
        mime = "image/svg+xml" if embedded == "svg" else "image/png"
        return Figure(name, title, src=f"data:{mime};base64," + base64.b64encode(data).decode("ascii"), files=files)

    def inline(self, name: str, title: str, svg: str, build: Callable[[], Any], data: str | None = None) -> Figure:
        """An inline SVG from `svgplots`; a PNG, when asked for, from matplotlib (`build`)."""
        files = [self._write(name, "svg", svg.encode("utf-8"))]
        if "png" in self.formats:
            files.append(self._write(name, "png", plots.render(build(), "png")))
        return Figure(name, title, inline=Markup(svg), data=Markup(data) if data else None, files=files)

    def _write(self, name: str, suffix: str, data: bytes) -> str:
        path = self.folder / f"{name}.{suffix}"
        path.write_bytes(data)
        return str(path)


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


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
