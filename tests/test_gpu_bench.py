"""`bench/gpu.py --smoke`: the GPU figures' script runs its whole code path on the CPU with tiny configs,
so the script a lent device will run cannot rot in between. Figures are never asserted (speed is
measured in bench/, not in tests); the table's shape is: every model × strategy × batch size row
with a rate and no errors, and the batch-invariance line per model counting every answer."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts subprocesses

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


gpu = _load_script()
SPECS = list(gpu.MODELS.values())


@pytest.fixture(scope="module")
def smoke() -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=600,
                            cwd=ROOT, env=ENV)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def _rows(output: str) -> dict[tuple[str, str, int], list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) >= 8 and cells[3].isdigit():
            rows[cells[1], cells[2], int(cells[3])] = cells[4:8]
    return rows


def test_every_model_strategy_and_batch_size_has_a_rate_and_no_errors(smoke: str) -> None:
    rows = _rows(smoke)
    expected = {(spec.hub_id, strategy, batch) for spec in SPECS for strategy in gpu.STRATEGIES
                for batch in gpu.BATCH_SIZES}
    assert set(rows) == expected
    for key, (rate, gb, ratio, errors) in rows.items():
        assert float(rate) > 0, key
        assert gb == "n/a (cpu)", key  # no CUDA: peak_gpu_gb is None, as metrics.json reports it on a CPU
        assert errors == "0", (key, smoke)
        published = next(spec.published_images_per_s for spec in SPECS if spec.hub_id == key[0])
        if published:
            assert float(ratio) == pytest.approx(float(rate) / published, rel=0.01, abs=0.01), key
        else:
            assert ratio == "n/a", key


def test_batch_invariance_is_reported_for_every_answer_of_every_model(smoke: str) -> None:
    n_images = 8
    pattern = re.compile(
        r"batch invariance (?P<model>\S+) \(batch 1 vs 8, (?P<n>\d+) images\): "
        r"closed-set (?P<closed_diff>\d+)/(?P<closed>\d+) answers, "
        r"(?P<closed_p_diff>\d+)/(?P<closed_p>\d+) predictions differ; "
        r"binary (?P<binary_diff>\d+)/(?P<binary>\d+) answers, "
        r"(?P<binary_p_diff>\d+)/(?P<binary_p>\d+) predictions differ; "
        r"likelihood (?P<likelihood_diff>\d+)/(?P<likelihood>\d+) argmaxes differ")
    found = {match["model"]: match for match in pattern.finditer(smoke)}
    assert set(found) == {spec.hub_id for spec in SPECS}
    background_excluded = len(gpu.CLASSES) - 1
    for match in found.values():
        assert int(match["n"]) == n_images
        assert int(match["closed"]) == int(match["closed_p"]) == n_images
        # Random weights never say yes, so binary asks every image every class but the background.
        assert int(match["binary"]) == n_images * background_excluded
        assert int(match["binary_p"]) == int(match["likelihood"]) == n_images
        # On the CPU batch 1 and batch 8 agree exactly, as the README says ("identical ... --smoke on three").
        differ = ("closed_diff", "closed_p_diff", "binary_diff", "binary_p_diff", "likelihood_diff")
        assert [int(match[name]) for name in differ] == [0] * 5, match[0]
    assert re.search(r"^total \d+\.\d s$", smoke, re.MULTILINE)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_without_a_gpu_it_refuses_in_one_line_and_points_to_smoke() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the full run would start")
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env=ENV)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "bench/gpu.py: no CUDA device; run it on a GPU machine, or `--smoke` for the CPU check"]
