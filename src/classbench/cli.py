"""The command line: thin typer commands over the runner, metrics and reports.

Heavy modules are imported inside the commands, so `classbench --help` answers at once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

try:  # typer ≥ 0.25 vendors click; older releases use the click package
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors

from classbench.errors import UserError

app = typer.Typer(
    name="classbench",
    help=(
        "Benchmark image classifiers — vision-language models and classic ones — on your labelled images.\n\n"
        "Typical use: `classbench run --dataset photos/ --model efficientnet-lite0 --classes 21 "
        "--per-class 10 --out runs/effnet`, then `classbench report runs/*`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

RUN_HELP = """Benchmark one model with one strategy on a dataset; results land in --out.

The run folder holds run.sqlite (every question asked and its answer), metrics.json and
predictions.csv. Running the same command again resumes where it stopped; a different spec on
the same folder is refused.

Examples:

  classbench run --dataset caltech256/ --model efficientnet-lite0 --classes 21 --background clutter --per-class 20

  classbench run --config run.yaml --out runs/qwen

Settings come from flags or a YAML file (--config) with the same names; flags win.
"""


def _options(values: list[str]) -> dict[str, Any]:
    """Parse repeated KEY=VALUE flags; values are read as YAML scalars (numbers, booleans, strings)."""
    import yaml

    parsed: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option {value!r}: expected KEY=VALUE, e.g. --option dtype=bf16")
        parsed[key.strip().replace("-", "_")] = yaml.safe_load(raw) if raw else ""
    return parsed


def default_out(model: str, strategy: str, identity_hash: str) -> Path:
    from classbench.sweep import slug

    return Path("runs") / f"{slug(model)}-{strategy}-{identity_hash[:8]}"


@app.command(help=RUN_HELP)
def run(
    dataset: Annotated[Optional[str], typer.Option(help="class-per-folder tree, .csv/.jsonl manifest (image,label), hf:NAME, or a saved HF dataset folder")] = None,
    model: Annotated[Optional[str], typer.Option(help="model to benchmark: efficientnet-lite0, timm:NAME, torchvision:NAME, hf:HUB_ID_OR_FOLDER (a VLM), openai:MODEL (GPT-4o or any OpenAI-compatible server), clip:HUB_ID_OR_FOLDER, open_clip:ARCH/TAG (see `classbench models`)")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="how to ask: direct (a classifier's own labels mapped onto yours), closed-set (a VLM picks from the class list), binary (a VLM says yes/no per class), likelihood (a VLM scores each class name as the answer), probe (logistic regression on image features from --shots labelled images)")] = None,
    classes: Annotated[Optional[int], typer.Option(help="use a seeded subset of N classes (nested: the 10 lie inside the 25)")] = None,
    per_class: Annotated[Optional[int], typer.Option(help="at most K images per class, seeded")] = None,
    shots: Annotated[Optional[int], typer.Option(help="K labelled images per class held out of the evaluation set for --strategy probe to learn from (any strategy with the same K scores the same images) [default: probe 5, else 0]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed for the class subset, per-class caps and order [default: 0]")] = None,
    background: Annotated[Optional[str], typer.Option(help="the background class (e.g. clutter): always kept, counted among --classes")] = None,
    label_file: Annotated[Optional[str], typer.Option(help="alias file folder→label (YAML, JSON or CSV); a folder's labels.yaml is read by default")] = None,
    split: Annotated[Optional[str], typer.Option(help="split of a Hugging Face dataset [default: test]")] = None,
    image_column: Annotated[Optional[str], typer.Option(help="image column of a manifest or HF dataset")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="label column of a manifest or HF dataset")] = None,
    label_map: Annotated[Optional[str], typer.Option(help="direct: explicit `class: [model labels]` mapping file (edit the run's label_map.json)")] = None,
    map_threshold: Annotated[Optional[float], typer.Option(help="direct: minimum name similarity for a model label to count toward a class [default: 0.5]")] = None,
    option: Annotated[list[str], typer.Option("--option", "-o", help="backend or strategy setting KEY=VALUE, repeatable")] = [],
    batch_size: Annotated[Optional[int], typer.Option(help="images per batch (speed only, never results) [default: 16]")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:1, mps [default: auto]")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="closed-set/binary/likelihood: prompt template with {classes} or {class} (likelihood: {classes} optional) [default: the published prompt]")] = None,
    shuffles: Annotated[Optional[int], typer.Option(help="closed-set: ask each image K times, class names in a seeded order; majority vote [default: 1]")] = None,
    binary_order: Annotated[Optional[str], typer.Option(help="binary: seeded (per image) or fixed (class-list) order of questions [default: seeded]")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="VLMs: longest answer, in tokens [default: 10]")] = None,
    score_norm: Annotated[Optional[str], typer.Option(help="likelihood: a class's score is its name's summed log-probability as the answer (sum) or the mean per token (mean) [default: sum]")] = None,
    calibrate: Annotated[Optional[bool], typer.Option("--calibrate", help="likelihood: subtract each class's score given a blank mid-grey image (the prompt's prior for each name)")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="hf: auto, bf16, fp16 or fp32 [default: auto]")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(help="hf: at most this many pixels per image (bounds Qwen's image tokens)")] = None,
    attn_implementation: Annotated[Optional[str], typer.Option(help="hf: eager, sdpa, flash_attention_2 [default: the model's]")] = None,
    device_map: Annotated[Optional[str], typer.Option(help="hf: transformers device_map, e.g. auto to spread a large model over GPUs")] = None,
    trust_remote_code: Annotated[Optional[bool], typer.Option("--trust-remote-code", help="hf: allow models that ship their own code (MiniCPM-V, InternVL2, Phi-3-vision)")] = None,
    base_url: Annotated[Optional[list[str]], typer.Option(metavar="URL", help="openai: server URL ending in /v1 (vLLM, SGLang, transformers serve); repeat for a fleet that shares the load [default: the OpenAI API]")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(help="openai: environment variable that holds the API key (never stored) [default: OPENAI_API_KEY]")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="openai: requests in flight across all servers; keep --batch-size at least this high [default: 16]")] = None,
    rpm: Annotated[Optional[float], typer.Option(help="openai: at most this many requests per minute, retries included")] = None,
    timeout_s: Annotated[Optional[float], typer.Option(help="openai: seconds before a request is abandoned and retried [default: 60]")] = None,
    max_retries: Annotated[Optional[int], typer.Option(help="openai: retries per question on 429, 5xx, timeouts, dropped connections, malformed answers [default: 6]")] = None,
    price_in: Annotated[Optional[float], typer.Option(help="USD per million input tokens [default: classbench's price table, for known API models]")] = None,
    price_out: Annotated[Optional[float], typer.Option(help="USD per million output tokens [default: the price table]")] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="stop cleanly once the run has cost this many USD; raise it and run again to go on")] = None,
    check_batching: Annotated[bool, typer.Option("--check-batching", help="first compare answers at batch sizes 1 and 8 on a few images; warn when they differ")] = False,
    config: Annotated[Optional[Path], typer.Option(help="YAML file with any of these settings")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run folder [default: runs/MODEL-STRATEGY-HASH, so the same command resumes]")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    from classbench.spec import build_spec

    overrides = dict(dataset=dataset, model=model, strategy=strategy, classes=classes, per_class=per_class, shots=shots, seed=seed,
                     background=background, label_file=label_file, split=split, image_column=image_column,
                     label_column=label_column, label_map=label_map, map_threshold=map_threshold,
                     batch_size=batch_size, device=device, prompt=prompt, shuffles=shuffles, binary_order=binary_order,
                     max_new_tokens=max_new_tokens, score_norm=score_norm, calibrate=calibrate, dtype=dtype, max_pixels=max_pixels,
                     attn_implementation=attn_implementation, device_map=device_map,
                     trust_remote_code=trust_remote_code, base_url=base_url, api_key_env=api_key_env,
                     concurrency=concurrency, rpm=rpm, timeout_s=timeout_s, max_retries=max_retries,
                     price_in=price_in, price_out=price_out, max_cost=max_cost)
    if option:
        overrides["options"] = _options(option)
    spec, config_out = build_spec(config, overrides)
    folder = out or (Path(config_out) if config_out else default_out(spec.model, spec.strategy, spec.identity_hash()))
    _run_and_report(spec, folder, progress, check_batching=check_batching)


def _run_and_report(spec, folder: Path, show_progress: bool, check_batching: bool = False,
                    models: Any = None, datasets: Any = None) -> dict[str, Any]:
    from classbench import metrics, runner
    from classbench.report import leaderboard
    from classbench.store import Store

    result = runner.run(spec, folder, progress=_RichProgress() if show_progress else None, log=_log,
                        check_batching=check_batching, models=models, datasets=datasets)
    store = Store.open_existing(folder)
    try:
        summary = metrics.write(store, folder)
    finally:
        store.close()
    typer.echo(leaderboard.markdown([summary]))
    extra = []
    if summary["invalid"]:
        extra.append(f"{summary['invalid']} invalid answers")
    if summary["n_failed"]:
        extra.append(f"{summary['n_failed']} images failed (listed in metrics.json)")
    ci = summary.get("accuracy_ci95")
    if ci:
        extra.append(f"accuracy 95% CI [{ci[0]:.3f}, {ci[1]:.3f}] over {summary['n_images']} images")
    if extra:
        typer.echo("; ".join(extra))
    if summary.get("strategy_summary"):
        from classbench.strategies import strategy_class

        typer.echo(strategy_class(spec.strategy).summary_line(summary["strategy_summary"]))
    from classbench import usage

    for line in usage.lines(summary):
        typer.echo(line)
    typer.echo(f"run folder: {folder}  (metrics.json, predictions.csv, run.sqlite)")
    if result.stopped:
        typer.echo(result.stopped, err=True)
        sys.exit(3)
    if not summary["complete"]:
        typer.echo("the run is not complete: run the same command again to retry what is missing")
    return summary


SWEEP_HELP = """Accuracy against the number of classes: run each model × strategy at each class count.

Each point is an ordinary run in OUT/MODEL-STRATEGY/nN/ (resumable, and a run folder for
`classbench report`). The class subsets are nested and keep the same images per class at every
N. The table (model × N → accuracy) is printed and written to OUT/sweep.md (with macro F1 and 95%
intervals) and OUT/sweep.csv (every figure, one row per point). Every setting of `classbench run`
is accepted and applies to every point; the same command again resumes.

Examples:

  classbench sweep --dataset caltech256/ --model hf:Qwen/Qwen2-VL-7B-Instruct --strategy closed-set --classes 10,25,50,75,100,150,200 --per-class 20 --out runs/sweep

  classbench report runs/sweep --html sweep.html
"""


def _with_settings_of(command: Any) -> Any:
    """Give a command every option of `command` it does not define itself, so `sweep` takes exactly the
    settings `run` takes (including ones added later) without a second copy of the list."""
    import inspect

    def decorate(function: Any) -> Any:
        own = [p for p in inspect.signature(function, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
        names = {p.name for p in own}
        shared = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name not in names]
        function.__signature__ = inspect.Signature([*own, *shared])
        function.__annotations__ = {p.name: p.annotation for p in (*own, *shared)}
        return function

    return decorate


@app.command(help=SWEEP_HELP)
@_with_settings_of(run)
def sweep(
    classes: Annotated[str, typer.Option(help="class counts, comma-separated, e.g. 10,25,50 (nested subsets of one seed)")],
    model: Annotated[list[str], typer.Option(help="model to benchmark; repeat or comma-separate for several [default: the config's]")] = [],
    strategy: Annotated[list[str], typer.Option(help="strategy; repeat or comma-separate for several [default: the config's, else direct]")] = [],
    out: Annotated[Path, typer.Option(help="sweep folder: OUT/MODEL-STRATEGY/nN/ per point, OUT/sweep.md, OUT/sweep.csv")] = Path("runs/sweep"),
    **settings: Any,
) -> None:
    from classbench import sweep as sweeping
    from classbench.report import sweep_table
    from classbench.spec import RunSpec, build_spec

    sizes = sweeping.parse_sizes(classes)
    models = [name.strip() for value in model for name in value.split(",") if name.strip()] or [None]
    strategies = [name.strip() for value in strategy for name in value.split(",") if name.strip()] or [None]
    values = {name: value for name, value in settings.items() if name in RunSpec.model_fields}
    if settings.get("option"):
        values["options"] = _options(settings["option"])
    flags = [(m, s) for m in models for s in strategies]
    bases = [build_spec(settings.get("config"), {**values, "model": m, "strategy": s, "classes": sizes[-1]})[0]
             for m, s in flags]
    points = sweeping.plan(bases, sizes, out)
    from classbench.datasets.cache import DatasetCache
    from classbench.runner import ModelPool

    datasets = DatasetCache()  # the size check and every point share one scan of the dataset
    if sweeping.pending(points):
        sweeping.check_sizes(bases[0], sizes, datasets)
    models = ModelPool()  # points of one model run back to back and share one load
    try:
        results = sweeping.run_points(points, lambda point: _run_and_report(
            point.spec, point.folder, settings.get("progress", True), settings.get("check_batching", False),
            models=models, datasets=datasets), log=_log)
    finally:
        models.close()
    markdown_path, csv_path = sweep_table.write(results, out)
    typer.echo(sweep_table.markdown(results))
    typer.echo(f"sweep folder: {out}  ({markdown_path.name}, {csv_path.name}; `classbench report {out} --html report.html` "
               "draws it)")


@app.command()
def report(
    folders: Annotated[Optional[list[Path]], typer.Argument(help="run folders (each holding run.sqlite or metrics.json), or folders holding runs (a sweep)")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV instead of markdown")] = False,
    html: Annotated[Optional[Path], typer.Option(help="also write one self-contained HTML report here (each plot also saved beside it, in FILE-plots/, in the format the page embeds)")] = None,
    plots: Annotated[Optional[str], typer.Option(help="with --html: also save every plot in these formats (png, svg or png,svg), drawn with matplotlib, for slides and papers")] = None,
    compare: Annotated[Optional[tuple[Path, Path]], typer.Option(help="compare two runs on the same images: accuracy difference with a paired bootstrap interval, McNemar's test")] = None,
) -> None:
    """Print the leaderboard of one or more runs: model | strategy | macro avg F1 | weighted avg F1 | accuracy | GPU (GB) | Speed (it/s).

    With --compare A B, print the paired comparison of two runs instead (folders are optional then).
    """
    from classbench.report import folders as run_folders
    from classbench.report import leaderboard

    if compare:
        from classbench.report import compare as comparing

        typer.echo(comparing.markdown(comparing.compare(*compare)))
    if not folders:
        if not compare:
            raise UserError("classbench report: give one or more run folders (or --compare A B)")
        return
    formats = frozenset()
    if plots is not None:
        from classbench.report import html as html_report

        if not html:
            raise UserError("--plots: only with --html FILE (the plots are saved beside the report)")
        formats = html_report.parse_formats(plots)
    runs = run_folders.expand(folders)
    results = [leaderboard.load_metrics(folder) for folder in runs]
    typer.echo(leaderboard.as_csv(results) if csv else leaderboard.markdown(results), nl=not csv)
    if html:
        from classbench.report import html as html_report

        typer.echo(f"HTML report: {html_report.write(runs, html, results, formats)}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="run folder")] = Path("runs/demo"),
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Benchmark the shipped EfficientNet-Lite0 on the shipped Fashion-MNIST sample (offline, a minute on a CPU)."""
    from classbench.demo import demo_dataset
    from classbench.spec import RunSpec

    spec = RunSpec(dataset=str(demo_dataset()), model="efficientnet-lite0", strategy="direct", batch_size=20)
    typer.echo(f"demo: {spec.model} on the Fashion-MNIST sample at {spec.dataset}")
    _run_and_report(spec, out, progress)


@app.command()
def models() -> None:
    """List the model backends and the strategies they serve."""
    from classbench.models import REGISTRY
    from classbench.strategies import REGISTRY as STRATEGIES

    typer.echo("backends (--model):")
    for name, entry in REGISTRY.items():
        typer.echo(f"  {entry.example:<36} {entry.help}")
    typer.echo("strategies (--strategy):")
    for name, (_, description) in STRATEGIES.items():
        typer.echo(f"  {name:<36} {description}")


@app.command()
def datasets(
    source: Annotated[str, typer.Argument(help="class-per-folder tree, manifest, hf:NAME or saved HF dataset")],
    label_file: Annotated[Optional[str], typer.Option(help="alias file folder→label")] = None,
) -> None:
    """Show what classbench sees in a dataset: classes, images per class, skipped files."""
    from classbench.datasets import open_dataset

    dataset = open_dataset(source, label_file=label_file)
    counts = {name: len(samples) for name, samples in dataset.by_class().items()}
    typer.echo(f"{dataset.name}: {len(dataset.samples)} images in {len(dataset.classes)} classes")
    for name, count in counts.items():
        typer.echo(f"  {count:>6}  {name}")
    for reason, count in sorted(dataset.skipped.items()):
        typer.echo(f"skipped: {count} {reason}")


class _RichProgress:
    def __init__(self) -> None:
        self.bar = None

    def start(self, total: int, done: int, description: str) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), transient=False)
        self.task = self.bar.add_task(description, total=total, completed=done, rate="")
        self.started_at = done
        self.bar.start()

    def advance(self, count: int) -> None:
        self.bar.advance(self.task, count)
        task = self.bar.tasks[0]
        if task.elapsed:
            rate = (task.completed - self.started_at) / task.elapsed
            self.bar.update(self.task, rate=f"{rate:.2f} it/s")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _log(message: str) -> None:
    typer.echo(message, err=True)


def main() -> None:
    try:
        app(standalone_mode=False)
    except UserError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except click_errors.UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            typer.echo(error.ctx.get_help() if error.ctx else "classbench --help")
            sys.exit(0)
        command = error.ctx.command_path if error.ctx else "classbench"
        typer.echo(f"error: {error.format_message()} (see `{command} --help`)", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted: run the same command again to resume", err=True)
        sys.exit(130)
