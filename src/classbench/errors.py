"""Errors a user can act on.

A `UserError` is shown as one line (what was wrong, where, what to do) instead of a traceback;
anything else is a bug in classbench and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, spec, data or environment."""


class ImageLoadError(Exception):
    """One image could not be read; the run records it and goes on."""
