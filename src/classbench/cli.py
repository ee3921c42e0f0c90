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
from classbench.cli_parts import RichProgress, parse_options, with_settings_of
from classbench.flags import given, with_setting_flags

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


def default_out(model: str, strategy: str, identity_hash: str) -> Path:
    from classbench.sweep import slug

    return Path("runs") / f"{slug(model)}-{strategy}-{identity_hash[:8]}"


@app.command(help=RUN_HELP)
@with_setting_flags
def run(
    dataset: Annotated[Optional[str], typer.Option(help="class-per-folder tree, .csv/.jsonl manifest (image,label), hf:NAME, a saved HF dataset folder, or a catalogue name such as caltech256 or cifar10 when no such file or folder exists (`classbench datasets --list`)")] = None,
    dataset_root: Annotated[Optional[str], typer.Option(help="catalogue datasets: the folder torchvision is given as root (e.g. DIR holding caltech256/256_ObjectCategories)")] = None,
    download: Annotated[Optional[bool], typer.Option("--download", help="catalogue datasets: let torchvision download the dataset into --dataset-root (not ImageNet)")] = None,
    model: Annotated[Optional[str], typer.Option(help="model to benchmark: efficientnet-lite0, timm:NAME, torchvision:NAME, hf:HUB_ID_OR_FOLDER (a VLM), openai:MODEL (GPT-4o or any OpenAI-compatible server), clip:HUB_ID_OR_FOLDER, open_clip:ARCH/TAG, open_clip:local-dir:FOLDER, open_clip:hf-hub:ORG/REPO (see `classbench models`)")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="how to ask: direct (a classifier's own labels mapped onto yours), closed-set (a VLM picks from the class list), binary (a VLM says yes/no per class), likelihood (a VLM scores each class name as the answer), probe (logistic regression on image features from --shots labelled images)")] = None,
    classes: Annotated[Optional[int], typer.Option(help="use a seeded subset of N classes (nested: the 10 lie inside the 25); with --class-list, its first N")] = None,
    class_list: Annotated[Optional[str], typer.Option(help="file with one class name per line (or its folder name): evaluate exactly these classes, in this order for --classes N (plus --background)")] = None,
    per_class: Annotated[Optional[int], typer.Option(help="at most K images per class, seeded")] = None,
    shots: Annotated[Optional[int], typer.Option(help="K labelled images per class held out of the evaluation set for --strategy probe to learn from (any strategy with the same K scores the same images) [default: probe 5, else 0]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed for the class subset, per-class caps and order [default: 0]")] = None,
    background: Annotated[Optional[str], typer.Option(help="the background class (e.g. clutter): always kept, counted among --classes")] = None,
    label_file: Annotated[Optional[str], typer.Option(help="alias file folder→label (YAML, JSON or CSV); a folder's labels.yaml is read by default")] = None,
    split: Annotated[Optional[str], typer.Option(help="split of a Hugging Face dataset [default: test]")] = None,
    image_column: Annotated[Optional[str], typer.Option(help="image column of a manifest or HF dataset")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="label column of a manifest or HF dataset")] = None,
    option: Annotated[list[str], typer.Option("--option", "-o", help="any strategy or model setting as KEY=VALUE, repeatable (also those without a flag of their own; `classbench models` lists them)")] = [],
    batch_size: Annotated[Optional[int], typer.Option(help="images per batch (speed only, never results) [default: 16]")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:1, mps [default: auto]")] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="stop cleanly once the run has cost this many USD; raise it and run again to go on")] = None,
    max_image_pixels: Annotated[Optional[int], typer.Option(help="refuse images with more pixels as unreadable, before decoding (memory per image) [default: 89478485]")] = None,
    max_aspect_ratio: Annotated[Optional[float], typer.Option(help="refuse images whose long side is more than this many times the short one as unreadable [default: 200]")] = None,
    executor: Annotated[Optional[str], typer.Option(help="where chunks are answered: local (this process) or ray (Ray actors, each holding one loaded model; answers are the same) [default: local]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="--executor ray: number of Ray actors [default: 1]")] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option(help="--executor ray: GPUs per actor [default: 1 when the Ray cluster has GPUs, else 0]")] = None,
    ray_address: Annotated[Optional[str], typer.Option(help="--executor ray: auto or ray://HEAD:10001 joins a cluster [default: start a local Ray instance]")] = None,
    ship_images: Annotated[Optional[bool], typer.Option("--ship-images", help="--executor ray: send each image file's original bytes to the workers (for workers that cannot see the dataset) instead of its path")] = None,
    check_batching: Annotated[bool, typer.Option("--check-batching", help="first compare answers at batch sizes 1 and 8 on a few images; warn when they differ")] = False,
    config: Annotated[Optional[Path], typer.Option(help="YAML file with any of these settings (nested: dataset, sample, model {name, settings}, strategy {name, settings}, runtime; or flat, with the flags' names)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run folder [default: runs/MODEL-STRATEGY-HASH, so the same command resumes]")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    **settings: Any,
) -> None:
    passed = locals()  # every general setting is a parameter of its own, named as in spec.GENERAL
    from classbench.spec import GENERAL, build_spec

    general = {name: passed[name] for name in (*GENERAL, "model", "strategy")}
    spec, config_out, _ = build_spec(config, {**general, **given(settings)}, parse_options(option))
    folder = out or (Path(config_out) if config_out else default_out(spec.model.name, spec.strategy.name,
                                                                      spec.identity_hash()))
    _run_and_report(spec, folder, progress, check_batching=check_batching)


def _run_and_report(spec, folder: Path, show_progress: bool, check_batching: bool = False,
                    executor: Any = None, datasets: Any = None) -> dict[str, Any]:
    from classbench import metrics, runner
    from classbench.report import leaderboard
    from classbench.records import MODEL_ERROR

    from classbench.exits import RunInterrupted

    try:
        result = runner.run(spec, folder, progress=RichProgress() if show_progress else None, log=_log,
                            check_batching=check_batching, executor=executor, datasets=datasets)
    except KeyboardInterrupt:
        raise RunInterrupted(folder) from None
    summary = metrics.write_folder(folder)
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
    if summary.get("n_classes") == 1:
        typer.echo(f"warning: the run has one class ({summary['classes'][0]!r}), so any answer naming it is right and "
                   "accuracy says nothing about the model; use a dataset with two or more classes", err=True)
    if summary.get("strategy_summary"):
        from classbench import strategies

        line = strategies.summary_line(spec.strategy.name, summary["strategy_summary"])
        if line:
            typer.echo(line)
    from classbench import usage

    for line in usage.lines(summary):
        typer.echo(line)
    typer.echo(f"run folder: {folder}  (metrics.json, predictions.csv, run.sqlite)")
    if result.stopped:
        typer.echo(result.stopped, err=True)
        sys.exit(3)
    if summary["n_failed"] and not summary["n_images"] and all(
            failure["error"].startswith(MODEL_ERROR) for failure in summary["failures"]):
        typer.echo(f"error: {spec.model.name} failed on every image ({summary['n_failed']}); the first error: "
                   f"{summary['failures'][0]['error'].splitlines()[0]} (see metrics.json). Fix the model or its settings, then run "
                   "the same command again to retry them", err=True)
        sys.exit(1)
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

  classbench sweep --recipe published-vlm-benchmark --dataset caltech256/ --out runs/published
"""


@app.command(help=SWEEP_HELP)
@with_settings_of(run)
def sweep(
    classes: Annotated[Optional[str], typer.Option(help="class counts, comma-separated, e.g. 10,25,50 (nested subsets of one seed); with --recipe, they replace the recipe's (its table runs at the largest)")] = None,
    model: Annotated[list[str], typer.Option(help="model to benchmark; repeat or comma-separate for several [default: the config's]")] = [],
    strategy: Annotated[list[str], typer.Option(help="strategy; repeat or comma-separate for several [default: the config's, else direct]")] = [],
    out: Annotated[Path, typer.Option(help="sweep folder: OUT/MODEL-STRATEGY/nN/ per point, OUT/sweep.md, OUT/sweep.csv")] = Path("runs/sweep"),
    recipe: Annotated[Optional[str], typer.Option(help="run a shipped recipe instead of --model/--strategy: published-vlm-benchmark (the published table's eight models, each with its settings; see `classbench models`)")] = None,
    recipe_model: Annotated[list[str], typer.Option(metavar="NAME[=MODEL]", help="with --recipe: run only the named models, each as published or with MODEL in its place (e.g. Llama-3.2-11B-Vision-Instruct=hf:tiny-mllama/ to try the recipe without a GPU); repeatable")] = [],
    **settings: Any,
) -> None:
    from classbench import sweep as sweeping
    from classbench.report import sweep_table
    from classbench.spec import GENERAL, build_spec, not_a_setting

    sizes = sweeping.parse_sizes(classes) if classes else None
    values = {**{name: value for name, value in settings.items() if name in GENERAL}, **given(settings)}
    options = parse_options(settings.get("option") or [])
    if recipe:
        if model or strategy:
            raise UserError("--recipe chooses the models and strategies; pick models with --recipe-model NAME[=MODEL]")
        from classbench import published

        points = published.recipe_plan(recipe, recipe_model, sizes, values, options, settings.get("config"), out)
    else:
        if sizes is None:
            raise UserError("classbench sweep: give the class counts, e.g. --classes 10,25,50 (or --recipe NAME)")
        models = [name.strip() for value in model for name in value.split(",") if name.strip()] or [None]
        strategies = [name.strip() for value in strategy for name in value.split(",") if name.strip()] or [None]
        built = [build_spec(settings.get("config"), {**values, "model": m, "strategy": s, "classes": sizes[-1]},
                            options, lenient=True) for m in models for s in strategies]
        unused = set.intersection(*(leftover for _, _, leftover in built))
        if unused:  # a setting is an error only when no point of the sweep has it
            first = built[0][0]
            raise UserError(not_a_setting(sorted(unused)[0], first.model.name, first.strategy.name))
        points = sweeping.plan([spec for spec, _, _ in built], sizes, out)
    from classbench.datasets.cache import DatasetCache
    from classbench.executors import make_executor

    datasets = DatasetCache()  # the size check and every point share one scan of the dataset
    if sweeping.pending(points):
        sweeping.check_sizes(points[0].spec, sorted({point.spec.sample.classes for point in points}), datasets)
    executor = make_executor(points[0].spec.runtime)  # points of one model run back to back and share one load
    try:
        results = sweeping.run_points(points, lambda point: _run_and_report(
            point.spec, point.folder, settings.get("progress", True), settings.get("check_batching", False),
            executor=executor, datasets=datasets), log=_log)
    finally:
        executor.close()
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
    runs, results, unreadable = leaderboard.load_readable(run_folders.expand(folders))
    typer.echo(leaderboard.as_csv(results) if csv else leaderboard.markdown(results), nl=not csv)
    if html:
        from classbench.report import html as html_report

        typer.echo(f"HTML report: {html_report.write(runs, html, results, formats)}")
    for line in unreadable:
        typer.echo(f"not reported: {line}", err=True)
    if unreadable:
        sys.exit(1)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="run folder")] = Path("runs/demo"),
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Benchmark the shipped EfficientNet-Lite0 on the shipped Fashion-MNIST sample (offline, a minute on a CPU)."""
    from classbench.demo import demo_dataset
    from classbench.spec import ComponentSpec, DatasetSpec, RunSpec, RuntimeSpec

    spec = RunSpec(dataset=DatasetSpec(source=str(demo_dataset())), model=ComponentSpec(name="efficientnet-lite0"),
                   runtime=RuntimeSpec(batch_size=20))
    typer.echo(f"demo: {spec.model.name} on the Fashion-MNIST sample at {spec.dataset.source}")
    _run_and_report(spec, out, progress)


@app.command()
def models() -> None:
    """List the model backends, the strategies, and every setting each of them declares."""
    from classbench.flags import listing
    from classbench.models import REGISTRY
    from classbench.strategies import REGISTRY as STRATEGIES

    typer.echo("backends (--model):")
    for name, entry in REGISTRY.items():
        typer.echo(f"  {entry.example:<36} {entry.help}")
    typer.echo("strategies (--strategy):")
    for name, strategy_entry in STRATEGIES.items():
        typer.echo(f"  {name:<36} {strategy_entry.help}")
    typer.echo("settings (flag, or -o KEY=VALUE; YAML: model.settings / strategy.settings):")
    for line in listing():
        typer.echo(line)
    from classbench import published

    typer.echo("published benchmark (`classbench sweep --recipe published-vlm-benchmark --dataset DIR` runs it:\n"
               f"  {published.describe_recipe()}):")
    for entry in published.PUBLISHED_MODELS:
        typer.echo(f"  {entry.name:<44} {entry.family}; strategies: {', '.join(entry.strategies)}\n"
                   f"  {'':<44} {published.flags(entry)}")


@app.command()
def datasets(
    source: Annotated[Optional[str], typer.Argument(help="class-per-folder tree, manifest, hf:NAME, saved HF dataset, or a catalogue name")] = None,
    label_file: Annotated[Optional[str], typer.Option(help="alias file folder→label")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the datasets known by name (the catalogue)")] = False,
    dataset_root: Annotated[Optional[str], typer.Option(help="catalogue datasets: the folder torchvision is given as root")] = None,
    split: Annotated[Optional[str], typer.Option(help="split of a catalogue or Hugging Face dataset")] = None,
    download: Annotated[bool, typer.Option("--download", help="catalogue datasets: let torchvision download it into --dataset-root")] = False,
) -> None:
    """Show what classbench sees in a dataset: classes, images per class, skipped files (--list: the catalogue)."""
    from classbench.datasets import open_dataset

    if list_:
        from classbench.datasets.catalogue import catalogue_lines

        for line in catalogue_lines():
            typer.echo(line)
        return
    if source is None:
        raise UserError("classbench datasets: give a dataset (folder, manifest, hf:NAME or catalogue name), or --list")
    dataset = open_dataset(source, label_file=label_file, split=split, dataset_root=dataset_root, download=download)
    counts = {name: len(samples) for name, samples in dataset.by_class().items()}
    typer.echo(f"{dataset.name}: {len(dataset.samples)} images in {len(dataset.classes)} classes")
    for name, count in counts.items():
        typer.echo(f"  {count:>6}  {name}")
    for reason, count in sorted(dataset.skipped.items()):
        typer.echo(f"skipped: {count} {reason}")


def _log(message: str) -> None:
    typer.echo(message, err=True)


def main() -> None:
    from classbench import exits

    try:
        with exits.one_line():  # Ctrl-C, a full disk, a damaged store: one line and an exit status
            exits.finish(app(standalone_mode=False))
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
        typer.echo(exits.interrupted_line(None), err=True)
        sys.exit(exits.INTERRUPTED)
