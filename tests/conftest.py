"""Shared test set-up: the tests import helper modules (trees.py, …) from this folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """One local Ray instance for every test that needs one (it takes seconds to start on two cores);
    runs in this process join it, a `classbench` subprocess joins it with `--ray-address`."""
    ray = pytest.importorskip("ray")
    from classbench.executors.ray import connect

    connect(None, 2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
