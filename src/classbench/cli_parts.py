"""Pieces the command-line commands share: `-o KEY=VALUE` parsing, one command taking another's
options, and the progress bar."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from classbench.errors import UserError


def parse_options(values: list[str]) -> dict[str, Any]:
    """Parse repeated KEY=VALUE flags; values are read as YAML scalars (numbers, booleans, strings)."""
    from classbench import safeyaml

    parsed: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option {value!r}: expected KEY=VALUE, e.g. --option dtype=bf16")
        parsed[key.strip().replace("-", "_")] = safeyaml.load(raw, f"--option {key.strip()}") if raw else ""
    return parsed


def with_parameters(function: Any, parameters: Iterable[inspect.Parameter]) -> Any:
    """Give a command taking `**settings` each of `parameters` it does not define itself, after its own
    (typer reads the signature, so each becomes an option)."""
    own = [p for p in inspect.signature(function, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in own}
    added = [p for p in parameters if p.name not in names]
    function.__signature__ = inspect.Signature([*own, *added])
    function.__annotations__ = {p.name: p.annotation for p in (*own, *added)}
    return function


def with_settings_of(command: Any) -> Any:
    """Give a command every option of `command` it does not define itself, so `sweep` takes exactly the
    settings `run` takes (including ones added later) without a second copy of the list."""
    return lambda function: with_parameters(function, inspect.signature(command, eval_str=True).parameters.values())


class RichProgress:
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
