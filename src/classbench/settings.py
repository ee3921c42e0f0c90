"""How a component (a strategy, a model backend) declares its settings.

Each component owns one pydantic class of settings, with every default written once, here and
nowhere else. The command line, YAML configs, `--option KEY=VALUE` and `classbench models` are
generated from these classes, and the run's identity (what must match for a run to resume) is
every setting not marked `runtime`: settings that change speed, retries or the bill but never an
answer (batch size, concurrency, device, server addresses).

    class MySettings(Settings):
        rounds: int = Field(default=1, ge=1, description="ask each image K times …")
        concurrency: int = runtime(16, "requests in flight")

A field may also be kept off the command line (`flag=False`: reachable with `--option` and YAML
only), for settings few users need and whose name is no good flag (the probe's `C`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, Strict

RUNTIME = "runtime"
NO_FLAG = "no_flag"


class Settings(BaseModel):
    """Base of every component's settings: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Numbers are strict: YAML reads `yes` as true, and pydantic would take true as 1 (`rounds: yes`
        would silently ask once). Strings and booleans are refused where a number is declared."""
        super().__pydantic_init_subclass__(**kwargs)
        loose = [info for info in cls.model_fields.values()
                 if _numeric(info.annotation) and not any(isinstance(item, Strict) for item in info.metadata)]
        for info in loose:
            info.metadata.append(Strict())
        if loose:
            cls.model_rebuild(force=True)

    @classmethod
    def runtime_names(cls) -> frozenset[str]:
        return frozenset(name for name, info in cls.model_fields.items() if _marked(info, RUNTIME))

    @classmethod
    def names(cls) -> dict[str, str]:
        """The name a user writes (a field's alias, where it needs one: `model_config` is pydantic's) → the field."""
        return {info.alias or name: name for name, info in cls.model_fields.items()}

    def identity(self) -> dict[str, Any]:
        """The settings that decide answers (everything not marked runtime), by the names users write."""
        return self.model_dump(mode="json", by_alias=True, exclude=set(self.runtime_names()))

    def values(self) -> dict[str, Any]:
        """Every setting, by the names users write."""
        return self.model_dump(by_alias=True)

    @classmethod
    def redact(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The settings as a run folder may keep them: a component whose settings can hold a secret
        (a token in a server URL) replaces it here. Most hold none."""
        return values


class NoSettings(Settings):
    """For a component with nothing to set."""


def runtime(default: Any = None, description: str = "", **constraints: Any) -> Any:
    """A setting that changes speed, retries or cost, never answers: not part of the run's identity."""
    return Field(default=default, description=description, json_schema_extra={RUNTIME: True}, **constraints)


def option_only(default: Any = None, description: str = "", runtime_setting: bool = False, **constraints: Any) -> Any:
    """A setting without a command-line flag of its own (set it with `--option KEY=VALUE` or YAML)."""
    extra = {NO_FLAG: True, **({RUNTIME: True} if runtime_setting else {})}
    return Field(default=default, description=description, json_schema_extra=extra, **constraints)


def _unwrap_optional(annotation: Any) -> Any:
    """`X | None` (or `Optional[X]`) as X; any other annotation (a union of several types too) as it is."""
    if get_origin(annotation) in (Union, UnionType):
        inner = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return annotation


def _numeric(annotation: Any) -> bool:
    """An int or float setting, optional or not (a bool is no number here)."""
    return _unwrap_optional(annotation) in (int, float)


def _marked(info: Any, marker: str) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(marker))


@dataclass(frozen=True)
class SettingInfo:
    """One declared setting, as the command line and `classbench models` show it."""

    name: str
    kind: type
    """The flag's value type: bool, int, float, str, or list (repeatable string)."""
    default: Any
    description: str
    runtime: bool
    flag: bool
    choices: tuple[str, ...] = ()

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")


def describe(settings: type[Settings]) -> list[SettingInfo]:
    """Every setting a class declares, in declaration order."""
    described = []
    for name, info in settings.model_fields.items():
        kind, choices = _kind(info.annotation)
        described.append(SettingInfo(name=info.alias or name, kind=kind, default=info.get_default(call_default_factory=True),
                                     description=info.description or "", runtime=_marked(info, RUNTIME),
                                     flag=not _marked(info, NO_FLAG), choices=choices))
    return described


def _kind(annotation: Any) -> tuple[type, tuple[str, ...]]:
    annotation = _unwrap_optional(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return str, tuple(str(value) for value in get_args(annotation))
    if origin in (list, tuple):
        return list, ()
    if annotation in (bool, int, float, str):
        return annotation, ()
    return str, ()


def default_text(info: SettingInfo) -> str:
    if info.default is None or info.default == [] or info.kind is bool and info.default is False:
        return ""
    return f" [default: {info.default}]"
