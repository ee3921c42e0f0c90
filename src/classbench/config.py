"""Reading a run config (`--config run.yaml`): the nested form the run folder stores, or classbench
0.1's flat form with the flags' names, into the sections `spec.build_spec` assembles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from classbench import safeyaml
from classbench.errors import UserError
from classbench.spec import absorb, empty


def read_config(config: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any], str | None]:
    """A YAML config in the nested form, the flat form, or a mix: (sections, flat settings to route, out)."""
    try:
        text = config.read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"--config {config}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"--config {config}: not UTF-8 text; a config is a YAML file") from None
    loaded = safeyaml.load(text, f"--config {config}") or {}  # refuses alias bombs before anything walks it
    if not isinstance(loaded, dict):
        raise UserError(f"--config {config}: expected a mapping of settings, e.g. `model: efficientnet-lite0`")
    nested, loose = empty(), {}
    out = loaded.pop("out", None)
    flat = {}
    for key, value in loaded.items():
        key = str(key).replace("-", "_")
        if key in ("sample", "runtime") or key in ("dataset", "model", "strategy") and isinstance(value, dict):
            if not isinstance(value, dict):
                raise UserError(f"--config {config}: `{key}` must be a mapping of settings")
            section = {str(name).replace("-", "_"): item for name, item in value.items()}
            if key in ("model", "strategy"):
                nested[key]["name"] = section.pop("name", None)
                settings = section.pop("settings", {}) or {}
                if section or not isinstance(settings, dict):
                    raise UserError(f"--config {config}: `{key}` takes `name` and `settings` "
                                    f"(e.g. {key}: {{name: …, settings: {{…}}}}); got {sorted(section)}")
                nested[key]["settings"] = dict(settings)
            else:
                nested[key].update(section)
        else:
            flat[key] = value
    absorb(flat, nested, loose)
    return nested, loose, None if out is None else str(out)
