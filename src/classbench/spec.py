"""The run spec: one serialisable record from which anyone (a resumed run, a worker, a report)
rebuilds everything a run does.

    dataset:  where the images are and how to read them
    sample:   which classes and images (seeded)
    model:    {name, settings}   settings declared by the backend (`models.REGISTRY`)
    strategy: {name, settings}   settings declared by the strategy (`strategies.REGISTRY`)
    runtime:  batch size, device, spending cap: speed and cost, never answers

The run's *identity*, which decides whether a second `classbench run` on the same folder resumes or
refuses, is every field except `runtime` and the component settings marked runtime. Settings come
from flags, `--option KEY=VALUE` or a YAML file in this nested form or in the flat form of
classbench 0.1 (`upgrade` reads it), and each component's settings are validated by its own class.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from classbench.errors import UserError

SECTIONS = ("dataset", "sample", "model", "strategy", "runtime")
GENERAL: dict[str, tuple[str, str]] = {
    "dataset": ("dataset", "source"), "dataset_root": ("dataset", "root"), "label_file": ("dataset", "label_file"),
    "split": ("dataset", "split"), "image_column": ("dataset", "image_column"),
    "label_column": ("dataset", "label_column"),
    "classes": ("sample", "classes"), "class_list": ("sample", "class_list"), "per_class": ("sample", "per_class"),
    "shots": ("sample", "shots"), "seed": ("sample", "seed"), "background": ("sample", "background"),
    "batch_size": ("runtime", "batch_size"), "device": ("runtime", "device"), "max_cost": ("runtime", "max_cost"),
    "download": ("runtime", "download"), "max_image_pixels": ("runtime", "max_image_pixels"),
    "max_aspect_ratio": ("runtime", "max_aspect_ratio"), "executor": ("runtime", "executor"),
    "workers": ("runtime", "workers"), "gpus_per_worker": ("runtime", "gpus_per_worker"),
    "ray_address": ("runtime", "ray_address"), "ship_images": ("runtime", "ship_images"),
}
"""Flat setting names (flags, classbench 0.1 configs) of the settings that concern every run."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Section):
    source: str = Field(description="class-per-folder tree, .csv/.jsonl manifest, hf:NAME, a saved HF dataset, or "
                                    "a catalogue name (caltech256, cifar10, …)")
    root: str | None = Field(default=None, description="catalogue datasets: the folder torchvision is given as root")
    label_file: str | None = None
    split: str | None = None
    image_column: str | None = None
    label_column: str | None = None

    @field_validator("source", "root", "label_file")
    @classmethod
    def _absolute(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Resolve paths so the identity does not depend on the working directory (a catalogue name stays
        a name)."""
        from classbench.datasets.catalogue import is_catalogue_name

        if value is None or value.startswith("hf:") or (info.field_name == "source" and is_catalogue_name(value)):
            return value
        return str(Path(value).expanduser().resolve())


class SampleSpec(_Section):
    classes: int | None = Field(default=None, ge=1, strict=True)  # strict: `seed: yes` is no number
    class_list: str | None = Field(default=None, description="file with one class per line: evaluate exactly these")
    per_class: int | None = Field(default=None, ge=1, strict=True)
    shots: int | None = Field(default=None, ge=0, strict=True,
                              description="labelled images per class held out for a probe")
    seed: int = Field(default=0, strict=True)
    background: str | None = None

    @field_validator("class_list")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser().resolve())


class ComponentSpec(_Section):
    name: str
    settings: dict[str, Any] = Field(default_factory=dict)
    """Every setting of the component, defaults included, as its settings class validated them."""


class RuntimeSpec(_Section):
    batch_size: int = Field(default=16, ge=1, strict=True)
    device: str = "auto"
    max_cost: float | None = Field(default=None, gt=0, strict=True,
                                   description="stop cleanly once the run has cost this many USD")
    download: bool = Field(default=False, description="catalogue datasets: let torchvision download the dataset")
    max_image_pixels: int | None = Field(default=None, ge=1, strict=True,
                                         description="refuse larger images as unreadable [default: 89,478,485]")
    max_aspect_ratio: float | None = Field(default=None, ge=1, strict=True,
                                           description="refuse images whose long side exceeds the short one this "
                                                       "many times [default: 200]")
    executor: Literal["local", "ray"] = Field(default="local", description="where chunks are answered")
    workers: int = Field(default=1, ge=1, strict=True,
                         description="--executor ray: actors, each holding one loaded model")
    gpus_per_worker: float | None = Field(default=None, ge=0, description="--executor ray: GPUs per actor "
                                          "[default: 1 when the Ray cluster has GPUs, else 0]")
    ray_address: str | None = Field(default=None, description="--executor ray: auto or ray://… joins a cluster "
                                    "[default: start a local Ray instance]")
    ship_images: bool = Field(default=False, description="--executor ray: send each image file's original bytes "
                              "to the workers instead of its path")


class RunSpec(_Section):
    dataset: DatasetSpec
    sample: SampleSpec = SampleSpec()
    model: ComponentSpec
    strategy: ComponentSpec = ComponentSpec(name="direct")
    runtime: RuntimeSpec = RuntimeSpec()

    @model_validator(mode="after")
    def _component_settings(self) -> RunSpec:
        """Validate each component's settings with its own class and keep them complete (defaults
        written out), so the stored record says exactly what ran."""
        model, strategy = self.model_settings(), self.strategy_settings()
        object.__setattr__(self, "model", ComponentSpec(name=self.model.name, settings=model.values()))
        object.__setattr__(self, "strategy", ComponentSpec(name=self.strategy.name, settings=strategy.values()))
        return self

    def model_settings(self) -> Any:
        from classbench import models

        return models.validate_settings(self.model.name, self.model.settings)

    def strategy_settings(self) -> Any:
        from classbench import strategies

        try:
            return strategies.settings_class(self.strategy.name)(**self.strategy.settings)
        except ValidationError as error:
            raise UserError(explain(error, f"strategy {self.strategy.name}")) from None

    def shots(self) -> int:
        """Held-out shots per class: the spec's, else what the strategy declares it needs."""
        from classbench import strategies

        if self.sample.shots is not None:
            return self.sample.shots
        return strategies.entry(self.strategy.name).default_shots

    def record(self) -> dict[str, Any]:
        """The spec as the run folder keeps it (JSON), with any secret a component's settings hold redacted."""
        from classbench import models, strategies

        record = self.model_dump(mode="json")
        record["model"]["settings"] = models.settings_class(self.model.name).redact(record["model"]["settings"])
        strategy = strategies.settings_class(self.strategy.name)
        record["strategy"]["settings"] = strategy.redact(record["strategy"]["settings"])
        return record

    def identity(self) -> dict[str, Any]:
        identity = {"dataset": self.dataset.model_dump(), "sample": self.sample.model_dump(),
                    "model": {"name": self.model.name, "settings": self.model_settings().identity()},
                    "strategy": {"name": self.strategy.name, "settings": self.strategy_settings().identity()}}
        return json.loads(json.dumps(identity, default=str))

    def identity_hash(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_flat(cls, **values: Any) -> RunSpec:
        """A spec from flat settings, named as the flags are (`dataset=…, model=…, per_class=5`): the
        Python equivalent of a `classbench run` command line."""
        options = values.pop("options", None)
        return build_spec(None, values, options)[0]

    def with_classes(self, classes: int) -> RunSpec:
        return self.model_copy(update={"sample": self.sample.model_copy(update={"classes": classes})})


# --- building a spec from flags, options and YAML ------------------------------------------------

def build_spec(config: Path | None, flags: dict[str, Any], options: dict[str, Any] | None = None,
               lenient: bool = False) -> tuple[RunSpec, str | None, set[str]]:
    """Merge a YAML config, `--option` values and flags (flags win, then options, then the file) into
    a validated spec. Component settings given flat (flags, options, a 0.1-style file) go to the
    chosen strategy and model that declare them.

    Returns the spec, the config's `out` folder (if it names one), and the settings that neither
    component has: an error unless `lenient` (a sweep, where another point may use them).
    """
    from classbench.config import read_config

    nested, loose, out = read_config(config) if config is not None else (empty(), {}, None)
    from_flags: dict[str, Any] = {}
    absorb(flags, nested, from_flags)
    loose = {**loose, **(options or {}), **from_flags}
    source = str(config) if config else None
    try:  # the general settings first: their errors read best, whatever else is wrong
        for section, cls in (("sample", SampleSpec), ("runtime", RuntimeSpec)):
            cls(**nested[section])
    except ValidationError as error:
        raise UserError(explain(error, source)) from None
    if not nested["model"].get("name"):
        source = f" (in {config})" if config else ""
        raise UserError(f"missing setting 'model'{source}: pass --model or set it in the config")
    nested["strategy"].setdefault("name", "direct")
    unused = route(loose, nested)
    if unused and not lenient:
        raise UserError(not_a_setting(sorted(unused)[0], nested["model"]["name"], nested["strategy"]["name"]))
    if "source" not in nested["dataset"]:
        raise UserError(f"missing setting 'dataset'{f' (in {config})' if config else ''}: pass --dataset or set "
                        "it in the config")
    try:
        return RunSpec(**nested), out, unused
    except ValidationError as error:
        raise UserError(explain(error, str(config) if config else None)) from None


def empty() -> dict[str, dict[str, Any]]:
    return {section: {} for section in SECTIONS}


def absorb(values: dict[str, Any], nested: dict[str, dict[str, Any]], loose: dict[str, Any]) -> None:
    """Put flat values where they belong: general settings in their section, names in their
    component, everything else in `loose` for `route`."""
    for key, value in values.items():
        key = str(key).replace("-", "_")
        if value is None:
            continue
        if key in GENERAL:
            section, field = GENERAL[key]
            nested[section][field] = value
        elif key in ("model", "strategy"):
            nested[key]["name"] = value
        elif key == "options":
            if not isinstance(value, dict):
                raise UserError(f"options: expected a mapping of KEY: VALUE, got {value!r}")
            loose.update({str(name).replace("-", "_"): item for name, item in value.items()})
        else:
            loose[key] = value


def route(loose: dict[str, Any], nested: dict[str, dict[str, Any]]) -> set[str]:
    """Give each flat setting to the chosen strategy and model that declare it (both, if both do);
    return the names neither declares."""
    from classbench import models, strategies

    targets = [(nested["strategy"], strategies.settings_class(nested["strategy"]["name"])),
               (nested["model"], models.settings_class(nested["model"]["name"]))]
    unused = set()
    for key, value in loose.items():
        takers = [component for component, cls in targets if key in cls.names()]
        for component in takers:
            component.setdefault("settings", {})[key] = value
        if not takers:
            unused.add(key)
    return unused


def not_a_setting(key: str, model: str, strategy: str) -> str:
    from classbench import models, strategies

    def names(cls: Any) -> str:
        return ", ".join(cls.names()) or "none"

    flag = "--" + key.replace("_", "-")
    return (f"unknown setting {key!r} ({flag}): neither --strategy {strategy} "
            f"(settings: {names(strategies.settings_class(strategy))}) nor --model {model} "
            f"(settings: {names(models.settings_class(model))}) has it; `classbench models` lists every "
            "component's settings")


def explain(error: ValidationError, source: str | None = None) -> str:
    first = error.errors()[0]
    where = str(first["loc"][-1]) if first["loc"] else "spec"
    inside = f" (in {source})" if source else ""
    if first["type"] == "missing":
        return f"missing setting {where!r}{inside}: pass --{where.replace('_', '-')} or set it in the config"
    if first["type"] == "extra_forbidden":
        return f"unknown setting {where!r}{inside}; `classbench run --help` and `classbench models` list the settings"
    if first["type"] == "value_error":  # our own validators explain, and the input may hold a secret
        return f"bad value for {where!r}{inside}: {first['msg'].removeprefix('Value error, ')}"
    return f"bad value for {where!r}{inside}: {first['msg']} (got {first.get('input')!r})"


# --- stored specs: upgrading classbench 0.1's flat records ------------------------------------------

def upgrade(flat: dict[str, Any]) -> dict[str, Any]:
    """A classbench 0.1 (flat) spec or identity in the nested form, for a resume or a report.

    Settings that neither the run's model nor its strategy declares had no effect in 0.1 (it
    accepted them with a note), so they are dropped."""
    nested, loose = empty(), {}
    absorb(flat, nested, loose)
    nested["strategy"].setdefault("name", "direct")
    route(loose, nested)
    return {section: values for section, values in nested.items() if values}


def stored(record: dict[str, Any] | None) -> dict[str, Any]:
    """A spec read back from a run folder, in the nested form whatever release wrote it."""
    record = dict(record or {})
    flat = isinstance(record.get("model"), str)  # 0.1 stored `model` as a name, not {name, settings}
    return upgrade(record) if flat else record


def flat_view(record: dict[str, Any] | None) -> dict[str, Any]:
    """A stored spec as one flat mapping named as the flags are (`dataset`, `classes`, `model`,
    `shuffles`, …): for reports that show or group runs by their settings."""
    nested = stored(record)
    flat: dict[str, Any] = {}
    for name, (section, field) in GENERAL.items():
        if field in (nested.get(section) or {}):
            flat[name] = nested[section][field]
    for kind in ("model", "strategy"):
        component = nested.get(kind) or {}
        flat[kind] = component.get("name")
        for key, value in (component.get("settings") or {}).items():
            flat.setdefault(key, value)
    return flat


def identity_differences(stored_identity: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a stored run's identity and the current spec's, as `field: old → new`.

    A setting added to classbench after the run started is no difference while it keeps its
    default (the run was made with the behaviour the default preserves), so an upgrade never
    strands a half-finished run; the same holds for a 0.1 identity, upgraded first.
    """
    try:
        old, new = _flatten(stored(stored_identity)), _flatten(stored(current))
    except UserError:  # a component this release does not know: compare the records as they are
        old, new = _flatten(stored_identity), _flatten(current)
    defaults = _flatten(_default_identity(current))
    changed = []
    for key in sorted(set(old) | set(new)):
        if key not in new and key not in defaults:
            continue  # a setting this release no longer has, or now counts as runtime: nothing to compare
        before = old.get(key, defaults.get(key))
        after = new.get(key, defaults.get(key))
        if before != after:
            changed.append(f"{key}: {before!r} → {after!r}")
    return changed


def _default_identity(current: dict[str, Any]) -> dict[str, Any]:
    """The identity of a run of the same model and strategy with every other setting at its default."""
    try:
        spec = RunSpec(dataset=DatasetSpec(source=current["dataset"]["source"]),
                       model=ComponentSpec(name=current["model"]["name"]),
                       strategy=ComponentSpec(name=current["strategy"]["name"]))
    except (KeyError, TypeError, UserError, ValidationError):
        return {}
    return spec.identity()


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and value and key != "options":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
