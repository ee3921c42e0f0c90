"""The run spec: everything that decides a run's results, from flags or a YAML file.

The spec doubles as provenance: it is stored in the run folder, and its *identity* (every field
except the runtime ones, which change speed but not answers) decides whether a second
`classbench run` on the same folder resumes or refuses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from classbench.errors import UserError

API_RUNTIME_FIELDS = frozenset({"base_url", "api_key_env", "concurrency", "rpm", "timeout_s", "max_retries",
                                "price_in", "price_out", "max_cost"})
"""API settings change speed, retries and the bill, never answers: the model name is the identity, so a
fleet of servers can change between sessions of one run."""
RUNTIME_FIELDS = frozenset({"batch_size", "device", "device_map", "trust_remote_code", "download"}) | API_RUNTIME_FIELDS


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(description="class-per-folder tree, .csv/.jsonl manifest, hf:NAME, a saved HF dataset, or a catalogue name (caltech256, cifar10, …)")
    dataset_root: str | None = Field(default=None, description="catalogue datasets: the folder torchvision is given as root")
    download: bool = Field(default=False, description="catalogue datasets: let torchvision download the dataset into --dataset-root")
    model: str = Field(description="backend:name, e.g. efficientnet-lite0, timm:resnet50, hf:Qwen/Qwen2-VL-2B-Instruct")
    strategy: str = "direct"
    classes: int | None = Field(default=None, ge=1)
    class_list: str | None = Field(default=None, description="file with one class per line: evaluate exactly these (--classes N: the first N)")
    per_class: int | None = Field(default=None, ge=1)
    shots: int | None = Field(default=None, ge=0, description="labelled images per class held out for a probe to learn from (probe: 5)")
    seed: int = 0
    background: str | None = None
    label_file: str | None = None
    split: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    label_map: str | None = Field(default=None, description="explicit model-label → class mapping file (direct)")
    map_threshold: float = Field(default=0.5, ge=-1.0, le=1.0)
    options: dict[str, Any] = Field(default_factory=dict, description="backend- and strategy-specific settings")
    prompt: str | None = Field(default=None, description="prompt template ({classes} or {class}); default: the strategy's published prompt")
    shuffles: int = Field(default=1, ge=1, description="closed-set: times each image is asked, class names in a seeded order")
    binary_order: Literal["seeded", "fixed"] = Field(default="seeded", description="binary: class order per image")
    max_new_tokens: int = Field(default=10, ge=1)
    score_norm: Literal["sum", "mean"] = Field(default="sum", description="likelihood: a class's score is its answer's summed log-probability, or the mean per token")
    calibrate: bool = Field(default=False, description="likelihood: subtract each class's score given a blank (mid-grey) image")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    max_pixels: int | None = Field(default=None, ge=1, description="upper bound on an image's pixels before the model")
    attn_implementation: str | None = None
    batch_size: int = Field(default=16, ge=1)
    device: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False
    base_url: list[str] | None = Field(default=None, description="openai: server URL(s) ending in /v1; several share the load [default: the OpenAI API]")
    api_key_env: str | None = Field(default=None, description="openai: environment variable holding the API key [default: OPENAI_API_KEY]")
    concurrency: int | None = Field(default=None, ge=1, description="openai: requests in flight across all servers [default: 16]")
    rpm: float | None = Field(default=None, gt=0, description="openai: at most this many requests per minute")
    timeout_s: float | None = Field(default=None, gt=0, description="openai: seconds before a request is abandoned and retried [default: 60]")
    max_retries: int | None = Field(default=None, ge=0, description="openai: retries per question after 429, 5xx, timeouts, dropped connections [default: 6]")
    price_in: float | None = Field(default=None, ge=0, description="USD per million input tokens [default: the price table]")
    price_out: float | None = Field(default=None, ge=0, description="USD per million output tokens [default: the price table]")
    max_cost: float | None = Field(default=None, gt=0, description="stop cleanly once the run has cost this many USD")

    @field_validator("base_url", mode="before")
    @classmethod
    def _url_list(cls, value: Any) -> Any:
        urls = [value] if isinstance(value, str) else value
        for url in urls or ():
            parts = urlsplit(str(url))
            if parts.username or parts.password:
                raise ValueError(f"{parts.scheme}://…@{parts.hostname}: a user or password in the URL would be "
                                 "stored with the run; put the key in an environment variable (--api-key-env)")
        return urls

    @field_validator("dataset", "label_file", "label_map", "dataset_root", "class_list")
    @classmethod
    def _absolute(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Resolve paths so the identity does not depend on the working directory (a catalogue name stays a name)."""
        from classbench.datasets.catalogue import is_catalogue_name

        if value is None or value.startswith("hf:") or (info.field_name == "dataset" and is_catalogue_name(value)):
            return value
        return str(Path(value).expanduser().resolve())

    def model_options(self) -> dict[str, Any]:
        """What the backend loader receives: `options` plus the model settings that have flags."""
        named = {"dtype": None if self.dtype == "auto" else self.dtype, "max_pixels": self.max_pixels, "attn_implementation": self.attn_implementation,
                 "device_map": self.device_map, "trust_remote_code": self.trust_remote_code or None}
        named.update({name: getattr(self, name) for name in API_RUNTIME_FIELDS - {"max_cost"}})
        return {**self.options, **{key: value for key, value in named.items() if value is not None}}

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
    if first["type"] == "value_error":  # our own validators explain, and the input may hold a secret
        return f"bad value for {where!r}{source}: {first['msg'].removeprefix('Value error, ')}"
    return f"bad value for {where!r}{source}: {first['msg']} (got {first.get('input')!r})"


def identity_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a stored run's identity and the current spec's, as `field: old → new`.

    A setting added to classbench after the run started is no difference while it keeps its
    default (the run was made with the behaviour the default preserves), so an upgrade never
    strands a half-finished run.
    """
    changed = []
    for key in sorted(set(stored) | set(current)):
        if key not in stored and key in RunSpec.model_fields:
            old = RunSpec.model_fields[key].get_default(call_default_factory=True)
        else:
            old = stored.get(key)
        if old != current.get(key):
            changed.append(f"{key}: {old!r} → {current.get(key)!r}")
    return changed
