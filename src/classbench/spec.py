"""The run spec: everything that decides a run's results, from flags or a YAML file.

The spec doubles as provenance: it is stored in the run folder, and its *identity* (every field
except the runtime ones, which change speed but not answers) decides whether a second
`classbench run` on the same folder resumes or refuses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from classbench.errors import UserError

RUNTIME_FIELDS = frozenset({"batch_size", "device"})


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(description="class-per-folder tree, .csv/.jsonl manifest, hf:NAME or a saved HF dataset")
    model: str = Field(description="backend:name, e.g. efficientnet-lite0, timm:resnet50, hf:Qwen/Qwen2-VL-2B-Instruct")
    strategy: str = "direct"
    classes: int | None = Field(default=None, ge=1)
    per_class: int | None = Field(default=None, ge=1)
    seed: int = 0
    background: str | None = None
    label_file: str | None = None
    split: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    label_map: str | None = Field(default=None, description="explicit model-label → class mapping file (direct)")
    map_threshold: float = Field(default=0.5, ge=-1.0, le=1.0)
    options: dict[str, Any] = Field(default_factory=dict, description="backend- and strategy-specific settings")
    batch_size: int = Field(default=16, ge=1)
    device: str = "auto"

    @field_validator("dataset", "label_file", "label_map")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        """Resolve paths so the identity does not depend on the working directory."""
        if value is None or value.startswith("hf:"):
            return value
        return str(Path(value).expanduser().resolve())

    def identity(self) -> dict[str, Any]:
        return self.model_dump(exclude=set(RUNTIME_FIELDS))

    def identity_hash(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_spec(config: Path | None, overrides: dict[str, Any]) -> tuple[RunSpec, str | None]:
    """Merge a YAML config with command-line values (flags win) and validate with clear errors.

    Returns the spec and the config's `out` folder, if it names one.
    """
    values: dict[str, Any] = {}
    out: str | None = None
    if config is not None:
        try:
            loaded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except OSError as error:
            raise UserError(f"--config {config}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise UserError(f"--config {config}: not valid YAML: {error}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"--config {config}: expected a mapping of settings, e.g. `model: efficientnet-lite0`")
        values.update({str(key).replace("-", "_"): value for key, value in loaded.items()})
        out = values.pop("out", None)
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return RunSpec(**values), out
    except ValidationError as error:
        raise UserError(_explain(error, config)) from None


def _explain(error: ValidationError, config: Path | None) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "spec"
    source = f" (in {config})" if config else ""
    if first["type"] == "missing":
        return f"missing setting {where!r}{source}: pass --{where.replace('_', '-')} or set it in the config"
    if first["type"] == "extra_forbidden":
        known = ", ".join(sorted(RunSpec.model_fields))
        return f"unknown setting {where!r}{source}; known settings: {known}"
    return f"bad value for {where!r}{source}: {first['msg']} (got {first.get('input')!r})"


def describe_difference(stored: dict[str, Any], current: dict[str, Any]) -> str:
    keys = sorted(set(stored) | set(current))
    changed = [f"{key}: {stored.get(key)!r} → {current.get(key)!r}" for key in keys if stored.get(key) != current.get(key)]
    return "; ".join(changed)
