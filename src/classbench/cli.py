"""The command line: thin typer commands over the runner, metrics and reports.

Heavy modules are imported inside the commands, so `classbench --help` answers at once.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer

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
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-")
    return Path("runs") / f"{slug}-{strategy}-{identity_hash[:8]}"


@app.command(help=RUN_HELP)
def run(
    dataset: Annotated[Optional[str], typer.Option(help="class-per-folder tree, .csv/.jsonl manifest (image,label), hf:NAME, or a saved HF dataset folder")] = None,
    model: Annotated[Optional[str], typer.Option(help="model to benchmark: efficientnet-lite0, timm:NAME, torchvision:NAME (see `classbench models`)")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="how to ask: direct (a classifier's own labels mapped onto yours)")] = None,
    classes: Annotated[Optional[int], typer.Option(help="use a seeded subset of N classes (nested: the 10 lie inside the 25)")] = None,
    per_class: Annotated[Optional[int], typer.Option(help="at most K images per class, seeded")] = None,
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
    config: Annotated[Optional[Path], typer.Option(help="YAML file with any of these settings")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run folder [default: runs/MODEL-STRATEGY-HASH, so the same command resumes]")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    from classbench.spec import build_spec

    overrides = dict(dataset=dataset, model=model, strategy=strategy, classes=classes, per_class=per_class, seed=seed,
                     background=background, label_file=label_file, split=split, image_column=image_column,
                     label_column=label_column, label_map=label_map, map_threshold=map_threshold,
                     batch_size=batch_size, device=device)
    if option:
        overrides["options"] = _options(option)
    spec, config_out = build_spec(config, overrides)
    folder = out or (Path(config_out) if config_out else default_out(spec.model, spec.strategy, spec.identity_hash()))
    _run_and_report(spec, folder, progress)


def _run_and_report(spec, folder: Path, show_progress: bool) -> dict[str, Any]:
    from classbench import metrics, runner
    from classbench.report import leaderboard
    from classbench.store import Store

    result = runner.run(spec, folder, progress=_RichProgress() if show_progress else None, log=_log)
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
    typer.echo(f"run folder: {folder}  (metrics.json, predictions.csv, run.sqlite)")
    if not summary["complete"]:
        typer.echo("the run is not complete: run the same command again to retry what is missing")
    return summary


@app.command()
def report(
    folders: Annotated[list[Path], typer.Argument(help="run folders (each holding run.sqlite or metrics.json)")],
    csv: Annotated[bool, typer.Option("--csv", help="print CSV instead of markdown")] = False,
) -> None:
    """Print the leaderboard of one or more runs: model | strategy | macro avg F1 | weighted avg F1 | accuracy | GPU (GB) | Speed (it/s)."""
    from classbench.report import leaderboard

    results = [leaderboard.load_metrics(folder) for folder in folders]
    typer.echo(leaderboard.as_csv(results) if csv else leaderboard.markdown(results), nl=not csv)


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
    except click.exceptions.NoArgsIsHelpError as error:
        typer.echo(error.ctx.get_help() if error.ctx else "classbench --help")
        sys.exit(0)
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx else "classbench"
        typer.echo(f"error: {error.format_message()} (see `{command} --help`)", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted: run the same command again to resume", err=True)
        sys.exit(130)
