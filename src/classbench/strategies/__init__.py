"""The strategy registry: name → class, imported only when used."""

from __future__ import annotations

import importlib

from classbench.errors import UserError

REGISTRY: dict[str, tuple[str, str]] = {
    "direct": ("classbench.strategies.direct:Direct",
               "a classifier's own labels mapped onto the classes, or a CLIP-style model's scores for the class names"),
    "probe": ("classbench.strategies.probe:Probe",
              "logistic regression on frozen image features, fitted on --shots K labelled images per class"),
    "closed-set": ("classbench.strategies.closed_set:ClosedSet",
                   "a VLM picks one name from the class list in the prompt; --shuffles K orders, majority vote"),
    "binary": ("classbench.strategies.binary:Binary",
               "a VLM is asked yes/no per class until the first yes; no yes is the background class"),
    "likelihood": ("classbench.strategies.likelihood:Likelihood",
                   "a VLM scores every class name's log-probability as the answer; the most likely wins"),
}


def strategy_class(name: str) -> type:
    if name not in REGISTRY:
        known = ", ".join(REGISTRY)
        raise UserError(f"--strategy {name!r}: unknown strategy. Known: {known}")
    module_name, class_name = REGISTRY[name][0].split(":")
    return getattr(importlib.import_module(module_name), class_name)
