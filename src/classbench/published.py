"""The published VLM benchmark as data: its eight models, the settings each needs, and its recipe.

classbench reproduces a published comparison (a 21-class Caltech256 subset with the `clutter`
background; closed-set with shuffled class lists and binary yes/no questions; accuracy against the
number of classes from 10 to 200). `PUBLISHED_MODELS` is the one table of its models: the exact
`--model` string, the run settings each checkpoint needs (dtype, `--trust-remote-code`, image-size
bounds) and the strategies each serves. `classbench models` prints it, and `recipe_points` turns it
into the runs of `classbench sweep --recipe published-vlm-benchmark`.

Points are plain dictionaries of run settings (the names of `classbench run`'s flags), so the glue
to the spec is one `build_spec` call per point in the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classbench.errors import UserError

if TYPE_CHECKING:
    from classbench.sweep import Point

RECIPES = ("published-vlm-benchmark",)
GENERATIVE = ("closed-set", "binary")
SCORED = (*GENERATIVE, "likelihood")


@dataclass(frozen=True)
class PublishedModel:
    name: str
    """The checkpoint as the published table names it."""
    model: str
    """The `--model` string."""
    family: str
    settings: dict[str, Any] = field(default_factory=dict)
    """Run settings this checkpoint needs, by `classbench run` flag name (`options` holds `-o` keys)."""
    strategies: tuple[str, ...] = SCORED
    """Remote-code families answer through their own chat code, so they have no scoring path."""


PUBLISHED_MODELS: tuple[PublishedModel, ...] = (
    PublishedModel("gpt-4o", "openai:gpt-4o", "GPT-4o (OpenAI API)"),
    # Qwen2-VL spends one token per 28×28 pixels: the bounds of its model card keep a photo between
    # 256 and 1,280 image tokens.
    PublishedModel("Qwen/Qwen2-VL-7B-Instruct", "hf:Qwen/Qwen2-VL-7B-Instruct", "Qwen2-VL",
                   {"dtype": "bf16", "max_pixels": 1280 * 28 * 28, "options": {"min_pixels": 256 * 28 * 28}}),
    PublishedModel("openbmb/MiniCPM-V-2_6", "hf:openbmb/MiniCPM-V-2_6", "MiniCPM-V (remote code)",
                   {"dtype": "bf16", "trust_remote_code": True}, GENERATIVE),
    PublishedModel("llava-hf/llava-v1.6-mistral-7b-hf", "hf:llava-hf/llava-v1.6-mistral-7b-hf",
                   "LLaVA-NeXT (Mistral)", {"dtype": "fp16"}),
    PublishedModel("llava-hf/llama3-llava-next-8b-hf", "hf:llava-hf/llama3-llava-next-8b-hf",
                   "LLaVA-NeXT (Llama 3)", {"dtype": "fp16"}),
    PublishedModel("meta-llama/Llama-3.2-11B-Vision-Instruct", "hf:meta-llama/Llama-3.2-11B-Vision-Instruct",
                   "Llama-3.2-Vision (mllama)", {"dtype": "bf16"}),
    PublishedModel("OpenGVLab/InternVL2-2B", "hf:OpenGVLab/InternVL2-2B", "InternVL2 (remote code)",
                   {"dtype": "bf16", "trust_remote_code": True}, GENERATIVE),
    PublishedModel("microsoft/Phi-3-vision-128k-instruct", "hf:microsoft/Phi-3-vision-128k-instruct",
                   "Phi-3-vision (remote code)", {"dtype": "bf16", "trust_remote_code": True}, GENERATIVE),
)


@dataclass(frozen=True)
class Recipe:
    classes: int
    """Classes of the comparison table, the background included."""
    background: str
    shuffles: int
    strategies: tuple[str, ...]
    sweep_sizes: tuple[int, ...]
    sweep_strategy: str
    sweep_models: tuple[str, ...]


PUBLISHED_VLM_BENCHMARK = Recipe(
    classes=21, background="clutter", shuffles=3, strategies=GENERATIVE,
    sweep_sizes=(10, 25, 50, 75, 100, 150, 200), sweep_strategy="closed-set",
    sweep_models=("Qwen/Qwen2-VL-7B-Instruct", "meta-llama/Llama-3.2-11B-Vision-Instruct"),
)


def flags(entry: PublishedModel) -> str:
    """The entry as `classbench run` flags, e.g. `--model hf:… --dtype bf16 --trust-remote-code`."""
    parts = [f"--model {entry.model}"]
    for key, value in entry.settings.items():
        if key == "options":
            parts += [f"-o {name}={option}" for name, option in value.items()]
        elif value is True:
            parts.append(f"--{key.replace('_', '-')}")
        else:
            parts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(parts)


def find(name: str) -> PublishedModel:
    """A published model by its full name or the part after the `/`, ignoring case."""
    wanted = name.strip().lower()
    for entry in PUBLISHED_MODELS:
        if wanted in (entry.name.lower(), entry.name.rsplit("/", 1)[-1].lower()):
            return entry
    known = ", ".join(entry.name for entry in PUBLISHED_MODELS)
    raise UserError(f"--recipe-model {name!r}: not a model of the published benchmark; choose one of {known}")


def parse_replacements(values: Sequence[str]) -> dict[str, str | None]:
    """`NAME` or `NAME=MODEL` flags → published name → the model to run in its place (None: as published)."""
    chosen: dict[str, str | None] = {}
    for value in values:
        name, sep, model = value.partition("=")
        if sep and not model.strip():
            raise UserError(f"--recipe-model {value!r}: expected NAME or NAME=MODEL, e.g. "
                            "Llama-3.2-11B-Vision-Instruct=hf:tiny-mllama/")
        chosen[find(name).name] = model.strip() or None
    return chosen


def recipe_points(recipe: str, replacements: dict[str, str | None] | None = None,
                  sizes: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The runs of `recipe`, in order, as run settings: every model × strategy at the table's class
    count, then the class-count sweep. `replacements` (from `--recipe-model`) limits the run to the
    models it names, each run as published or with another model (a tiny one, a local copy) in its
    place, with the published settings. `sizes` (from `--classes`) replaces the class counts: the
    sweep runs at each, the table at the largest."""
    if recipe not in RECIPES:
        raise UserError(f"--recipe {recipe!r}: unknown recipe; known: {', '.join(RECIPES)}")
    plan = PUBLISHED_VLM_BENCHMARK
    table_size = max(sizes) if sizes else plan.classes
    sweep_sizes = tuple(sizes) if sizes else plan.sweep_sizes
    chosen = [entry for entry in PUBLISHED_MODELS if replacements is None or entry.name in replacements]
    common = {"background": plan.background}
    points = []
    for entry in chosen:
        model = (replacements or {}).get(entry.name) or entry.model
        for strategy in plan.strategies:
            if strategy in entry.strategies:
                extra = {"shuffles": plan.shuffles} if strategy == "closed-set" else {}
                points.append({**common, **entry.settings, **extra, "model": model, "strategy": strategy,
                               "classes": table_size})
    for entry in chosen:
        if entry.name not in plan.sweep_models:
            continue
        model = (replacements or {}).get(entry.name) or entry.model
        for size in sweep_sizes:
            if size != table_size or plan.sweep_strategy not in plan.strategies:
                points.append({**common, **entry.settings, "shuffles": plan.shuffles, "model": model,
                               "strategy": plan.sweep_strategy, "classes": size})
    return points


def describe_recipe() -> str:
    plan = PUBLISHED_VLM_BENCHMARK
    return (f"{len(PUBLISHED_MODELS)} models × {', '.join(plan.strategies)} at {plan.classes} classes "
            f"(background {plan.background}, closed-set asked {plan.shuffles} times with shuffled names); "
            f"{plan.sweep_strategy} at {', '.join(map(str, plan.sweep_sizes))} classes for "
            f"{', '.join(name.rsplit('/', 1)[-1] for name in plan.sweep_models)}")


def recipe_plan(recipe: str, replacements: Sequence[str], sizes: Sequence[int] | None, values: dict[str, Any],
                options: dict[str, Any], config: Path | None, out: Path) -> list[Point]:
    """The sweep points of `recipe` for `classbench sweep --recipe`: each point's settings are the
    recipe's, then the user's flags (`values`: `--per-class`, `--device`, `--dtype`, …; `options`: `-o`) over them,
    except the model, strategy and class count, which the recipe decides. This is the only glue
    between the recipe and the run spec."""
    from classbench.spec import build_spec, not_a_setting
    from classbench.sweep import Point, point_folder

    points, unused = [], []
    for point in recipe_points(recipe, parse_replacements(replacements) if replacements else None, sizes):
        user = {key: value for key, value in values.items() if value is not None}
        flat = {key: value for key, value in point.items() if key != "options"}
        spec, _, leftover = build_spec(config, {**flat, **user, **{key: point[key] for key in ("model", "strategy",
                                                                                              "classes")}},
                                       {**point.get("options", {}), **options}, lenient=True)
        unused.append(leftover)
        points.append(Point(spec, point_folder(out, spec)))
    never = set.intersection(*unused) if unused else set()
    if never:  # a setting is an error only when no point of the recipe has it
        raise UserError(not_a_setting(sorted(never)[0], points[0].spec.model.name, points[0].spec.strategy.name))
    return points
