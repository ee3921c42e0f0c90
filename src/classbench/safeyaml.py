"""YAML from users (configs, alias files, `--option` values), read so that it cannot exhaust memory.

`yaml.safe_load` builds an alias as a second reference to one object, so a "billion laughs"
document (each level listing the previous one nine times) loads in microseconds, and explodes
only when something walks it as a tree: `json.dumps` for the run's identity hash, pydantic
validation, a report. So every document is measured as the tree it stands for before anything
else sees it (counting each shared object once per reference, memoised, so measuring is as cheap
as loading) and refused beyond `MAX_NODES`, far above any real config; a recursive alias
(`&a [*a]`), which no walk could finish, is refused too.
"""

from __future__ import annotations

from typing import Any

import yaml

from classbench.errors import UserError

MAX_NODES = 100_000
"""Values a document may stand for once its aliases are expanded (a real config has dozens)."""


def load(text: str, what: str) -> Any:
    """Parse `text` (named `what` in errors) and refuse a document that expands beyond MAX_NODES."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(f"{what}: not valid YAML: {_first_line(error)}") from None
    except RecursionError:
        raise UserError(f"{what}: nested too deeply to read as YAML") from None
    check_size(loaded, what)
    return loaded


def check_size(value: Any, what: str) -> None:
    """Refuse `value` when, written out as a tree, it would hold more than MAX_NODES values."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(item: Any, depth: int) -> int:
        if not isinstance(item, (dict, list, tuple, set)):
            return 1
        key = id(item)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise UserError(f"{what}: a YAML alias refers to itself (a recursive structure); write the values out")
        if depth > 200:
            raise UserError(f"{what}: nested more than 200 levels deep; a classbench config is a few levels")
        open_.add(key)
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else list(item)
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                raise UserError(f"{what}: its YAML aliases expand to more than {MAX_NODES:,} values (an alias "
                                "bomb?); a classbench config needs a few dozen, so write it without such aliases")
        open_.discard(key)
        sizes[key] = total
        return total

    size(value, 0)


def _first_line(error: yaml.YAMLError) -> str:
    return " ".join(str(error).split())[:300]
