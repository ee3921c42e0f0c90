"""The strategy registry: name → class, imported only when used."""

from __future__ import annotations

import importlib

from classbench.errors import UserError

REGISTRY: dict[str, tuple[str, str]] = {
    "direct": ("classbench.strategies.direct:Direct", "a classifier's own labels mapped onto the classes"),
}


def strategy_class(name: str) -> type:
    if name not in REGISTRY:
        known = ", ".join(REGISTRY)
        raise UserError(f"--strategy {name!r}: unknown strategy. Known: {known}")
    module_name, class_name = REGISTRY[name][0].split(":")
    return getattr(importlib.import_module(module_name), class_name)
