"""`python -m classbench ARGS` in the test's own process (the same `main`), so a tiny model's imports are paid once."""

from __future__ import annotations

import sys
from unittest import mock


def classbench(*args: str) -> int:
    """The exit code of `classbench ARGS`; its output goes to the test's captured stdout and stderr."""
    from classbench.cli import main

    with mock.patch.object(sys, "argv", ["classbench", *args]):
        try:
            main()
        except SystemExit as done:
            return int(done.code or 0)
    return 0
