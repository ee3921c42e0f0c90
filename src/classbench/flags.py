"""Command-line flags generated from the components' declared settings.

Every setting a strategy or backend declares (`classbench.settings`) becomes one `--flag` of
`classbench run` and `classbench sweep`, with its help and default taken from the declaration, so a
new setting needs no edit here or in the CLI. A name declared by several components (`--prompt`,
`--dtype`) is one flag, given to whichever of the chosen strategy and model declares it
(`spec.route`). `classbench models` prints the same declarations.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from classbench import models, strategies
from classbench.settings import Settings, SettingInfo, default_text, describe


@dataclass(frozen=True)
class Component:
    kind: str
    """"strategy" or "model"."""
    label: str
    """How the user names it: a strategy name, or a backend prefix (several when they share settings)."""
    settings: type[Settings]


def components() -> list[Component]:
    found = [Component("strategy", name, strategies.settings_class(name)) for name in strategies.REGISTRY]
    by_class: dict[type[Settings], list[str]] = {}
    for prefix in models.REGISTRY:
        by_class.setdefault(models.settings_class(prefix), []).append(prefix)
    found += [Component("model", ", ".join(prefixes), cls) for cls, prefixes in by_class.items()]
    return found


@dataclass(frozen=True)
class Flag:
    info: SettingInfo
    owners: tuple[tuple[str, SettingInfo], ...]
    """(component label, its declaration of the setting) for each component that declares it."""

    def help(self) -> str:
        if len({(i.description, i.default, i.choices) for _, i in self.owners}) == 1:
            return f"{', '.join(label for label, _ in self.owners)}: {_described(self.info)}"
        return "; ".join(f"{label}: {_described(info)}" for label, info in self.owners)


def _described(info: SettingInfo) -> str:
    choices = f" ({', '.join(info.choices)})" if info.choices else ""
    return f"{info.description}{choices}{default_text(info)}"


def setting_flags() -> dict[str, Flag]:
    """Every flag-worthy setting of every component, merged by name, in declaration order."""
    merged: dict[str, tuple[SettingInfo, list[tuple[str, SettingInfo]]]] = {}
    for component in components():
        for info in describe(component.settings):
            if not info.flag:
                continue
            first, owners = merged.setdefault(info.name, (info, []))
            if first.kind is not info.kind:
                raise TypeError(f"setting {info.name!r} is a {first.kind.__name__} in one component and a "
                                f"{info.kind.__name__} in {component.label}: one flag cannot take both")
            owners.append((component.label, info))
    return {name: Flag(info, tuple(owners)) for name, (info, owners) in merged.items()}


def _parameter(flag: Flag) -> inspect.Parameter:
    info = flag.info
    if info.kind is bool:
        annotation: Any = Annotated[Optional[bool], typer.Option(info.flag_name, help=flag.help())]
    elif info.kind is list:
        metavar = "URL" if "url" in info.name else "VALUE"
        annotation = Annotated[Optional[list[str]], typer.Option(info.flag_name, metavar=metavar, help=flag.help())]
    else:
        annotation = Annotated[Optional[info.kind], typer.Option(info.flag_name, help=flag.help())]  # type: ignore[name-defined]
    return inspect.Parameter(info.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def with_setting_flags(function: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command taking `**settings` one option per declared setting (after its own options)."""
    from classbench.cli_parts import with_parameters

    return with_parameters(function, [_parameter(flag) for flag in setting_flags().values()])


def given(settings: dict[str, Any]) -> dict[str, Any]:
    """The component settings the user actually passed (flags left unset are None)."""
    flags = setting_flags()
    return {name: value for name, value in settings.items() if name in flags and value is not None}


def listing() -> list[str]:
    """Every component's settings, for `classbench models`: name, default, runtime mark, description."""
    lines = []
    for component in components():
        infos = describe(component.settings)
        if not infos:
            continue
        lines.append(f"  {component.kind} {component.label}:")
        for info in infos:
            how = info.flag_name if info.flag else f"-o {info.name}=…"
            mark = " [runtime: never changes answers]" if info.runtime else ""
            lines.append(f"    {how:<24} {info.description}{default_text(info)}{mark}")
    return lines
