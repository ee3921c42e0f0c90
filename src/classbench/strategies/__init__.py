"""The strategy registry: name → settings, implementations and summary, imported only when used.

Adding a strategy is one module (its settings class and one `Strategy` subclass per backend
capability it can use) plus one line here. Where a strategy has two ways of asking (likelihood
over whole-name scores or over an API's first-token log-probabilities), each is its own class, and
the registry picks the first whose capability the model has. A strategy's summary (vote agreement,
questions per image, …) is declared here and read by metrics through `summarise`, never looked up
on a class.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from classbench.errors import UserError
from classbench.settings import Settings


@dataclass(frozen=True)
class Entry:
    settings: str
    """`module:Class` of the strategy's settings."""
    implementations: tuple[str, ...]
    """`module:Class` of each implementation, in order of preference."""
    help: str
    summary: str | None = None
    """`module:function` taking `RunRecords`, returning the strategy's figures (or None)."""
    summary_line: str | None = None
    """`module:function` turning those figures into one line for the terminal."""
    default_shots: int = 0
    """Labelled images per class held out for the strategy to learn from, unless --shots says otherwise."""


REGISTRY: dict[str, Entry] = {
    "direct": Entry("classbench.strategies.direct:DirectSettings",
                    ("classbench.strategies.direct:MappedLabels", "classbench.strategies.direct:ZeroShot"),
                    "a classifier's own labels mapped onto the classes, or a CLIP-style model's scores for the class names"),
    "probe": Entry("classbench.strategies.probe:ProbeSettings", ("classbench.strategies.probe:Probe",),
                   "logistic regression on frozen image features, fitted on --shots K labelled images per class",
                   "classbench.strategies.probe:summarise", "classbench.strategies.probe:summary_line",
                   default_shots=5),
    "closed-set": Entry("classbench.strategies.closed_set:ClosedSetSettings",
                        ("classbench.strategies.closed_set:ClosedSet",),
                        "a VLM picks one name from the class list in the prompt; asked in K seeded orders, majority vote",
                        "classbench.strategies.closed_set:summarise", "classbench.strategies.closed_set:summary_line"),
    "binary": Entry("classbench.strategies.binary:BinarySettings",
                    ("classbench.strategies.binary_shared:SharedPrefixBinary", "classbench.strategies.binary:Binary"),
                    "a VLM is asked yes/no per class until the first yes; no yes is the background class",
                    "classbench.strategies.binary:summarise", "classbench.strategies.binary:summary_line"),
    "likelihood": Entry("classbench.strategies.likelihood:LikelihoodSettings",
                        ("classbench.strategies.likelihood:Likelihood",
                         "classbench.strategies.likelihood_api:FirstTokenLikelihood"),
                        "a VLM scores every class name's log-probability as the answer; the most likely wins",
                        "classbench.strategies.likelihood:summarise", "classbench.strategies.likelihood:summary_line"),
}


def _load(path: str) -> Any:
    module_name, attribute = path.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise UserError(f"--strategy {name!r}: unknown strategy. Known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def settings_class(name: str) -> type[Settings]:
    return _load(entry(name).settings)


def implementations(name: str) -> list[type]:
    return [_load(path) for path in entry(name).implementations]


def build(name: str, model: Any, settings: Settings, context: Any) -> Any:
    """The implementation of strategy `name` that the model can serve, constructed."""
    chosen = next((cls for cls in implementations(name) if cls.needs in model.capabilities), None)
    if chosen is None:
        needs = " or ".join(cls.needs for cls in implementations(name))
        can = ", ".join(sorted(model.capabilities)) or "nothing"
        raise UserError(f"--strategy {name} needs a model that can {needs}; {model.model_id} can {can}. "
                        "`classbench models` lists which backend suits which strategy.")
    return chosen(model, settings, context)


def summarise(name: str, records: Any) -> dict[str, Any] | None:
    path = REGISTRY[name].summary if name in REGISTRY else None
    return _load(path)(records) if path else None


def summary_line(name: str, summary: dict[str, Any]) -> str | None:
    path = REGISTRY[name].summary_line if name in REGISTRY else None
    function: Callable[[dict[str, Any]], str] | None = _load(path) if path else None
    return function(summary) if function else None
