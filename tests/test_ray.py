"""`--executor ray`: the same answers as a local run, whatever dies on the way.

All tests share one local Ray instance (`ray_address` in conftest.py, started once per session: Ray
starts slowly on two cores) and run two workers, each holding one loaded model. Runs are compared
with a local run of the same spec on what is stored: predictions, and every question's prompt, raw
answer and mapped label.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
ray = pytest.importorskip("ray")

from trees import make_tree  # noqa: E402
from vlm_fixtures import image_tree, model_folder, read_metrics, run  # noqa: E402

from classbench import metrics, runner  # noqa: E402
from classbench.spec import RunSpec  # noqa: E402
from classbench.store import Store  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")


def stored(out: Path) -> tuple[set[tuple], set[tuple], int]:
    """(predictions, questions, number of question rows) as stored, without timings."""
    db = sqlite3.connect(out / "run.sqlite")
    try:
        predictions = set(db.execute("SELECT image, label, prediction, status, error, detail FROM predictions"))
        questions = list(db.execute("SELECT image, key, prompt, answer, label, error FROM questions"))
        return predictions, set(questions), len(questions)
    finally:
        db.close()


def ray_run(tree: Path, out: Path, model: str, strategy: str, progress: Any = None, **settings: Any) -> dict:
    spec = RunSpec.from_flat(dataset=str(tree), model=model, strategy=strategy, device="cpu", executor="ray",
                             workers=2, **settings)
    runner.run(spec, out, progress=progress, log=lambda _: None)
    store = Store.open_existing(out)
    try:
        return metrics.write(store, out)
    finally:
        store.close()


def alive_workers() -> list[int]:
    """PIDs of the live classbench workers, from Ray's actor table."""
    from ray._private import state

    return [actor["Pid"] for actor in state.actors().values()
            if actor["ActorClassName"] == "Worker" and actor["State"] == "ALIVE"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_tree(tmp_path_factory.mktemp("ray") / "tree", per_class=2)


@pytest.mark.parametrize("strategy, settings", [
    ("closed-set", {"shuffles": 2, "batch_size": 3, "max_new_tokens": 3}),
    ("binary", {"batch_size": 2, "max_new_tokens": 2, "ship_images": True}),
])
def test_a_vlm_under_ray_stores_what_a_local_run_stores(ray_address: str, tree: Path, tmp_path: Path,
                                                        strategy: str, settings: dict) -> None:
    model = model_folder("qwen2_vl")
    local_settings = {key: value for key, value in settings.items() if key != "ship_images"}
    run(tree, tmp_path / "local", model, strategy, background="clutter", **local_settings)
    summary = ray_run(tree, tmp_path / "ray", f"hf:{model}", strategy, background="clutter", **settings)
    assert stored(tmp_path / "ray") == stored(tmp_path / "local")
    execution = summary["execution"]
    assert execution["executor"] == "ray" and execution["workers"] == 2 and execution["gpus"] == 0
    assert execution["ship_images"] == settings.get("ship_images", False)
    assert sum(worker["images"] for worker in execution["per_worker"]) == 8 == execution["images"]
    assert all(worker["pid"] != os.getpid() for worker in execution["per_worker"])
    assert read_metrics(tmp_path / "local")["execution"]["executor"] == "local"


def test_efficientnet_direct_under_ray_matches_local(ray_address: str, tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    photos = make_tree(tmp_path / "photos", folders=("001.cat", "002.dog"), per_class=3)
    for out, executor in (("local", {}), ("ray", {"executor": "ray", "workers": 2})):
        spec = RunSpec.from_flat(dataset=str(photos), model="efficientnet-lite0", background="clutter", batch_size=2,
                                 device="cpu", **executor)
        runner.run(spec, tmp_path / out, log=lambda _: None)
    assert stored(tmp_path / "ray") == stored(tmp_path / "local")
    assert (tmp_path / "ray" / "label_map.json").read_text() == (tmp_path / "local" / "label_map.json").read_text()


class KillOneWorker:
    """A progress bar that, when the first answers are stored, checks that no worker holds a file of the
    run folder open, then kills one worker process with SIGKILL."""

    def __init__(self, out: Path) -> None:
        self.out, self.killed, self.open_files = out, None, []

    def start(self, total: int, done: int, description: str) -> None: ...
    def stop(self) -> None: ...

    def advance(self, count: int) -> None:
        if self.killed is not None:
            return
        pids = alive_workers()
        for pid in pids:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.path.realpath(fd)
                if target.startswith(str(self.out.resolve())):
                    self.open_files.append(target)
        self.killed = pids[0]
        os.kill(self.killed, signal.SIGKILL)


def test_a_killed_worker_costs_nothing(ray_address: str, tree: Path, tmp_path: Path) -> None:
    model = model_folder("qwen2_vl")
    settings = dict(background="clutter", shuffles=2, batch_size=1, max_new_tokens=3)
    run(tree, tmp_path / "local", model, "closed-set", **settings)
    killer = KillOneWorker(tmp_path / "ray")
    summary = ray_run(tree, tmp_path / "ray", f"hf:{model}", "closed-set", progress=killer, **settings)
    assert killer.killed is not None and killer.open_files == [], "workers never open the run folder"
    assert summary["complete"] and summary["execution"]["worker_deaths"] == 1
    workers = summary["execution"]["per_worker"]
    [dead] = [worker for worker in workers if worker["died"]]
    assert dead["pid"] == killer.killed and [w["replaces"] for w in workers].count(dead["worker"]) == 1
    assert sum(worker["images"] for worker in workers) == 8, "the dead worker's answers count too"
    assert stored(tmp_path / "ray") == stored(tmp_path / "local")


KILL_DRIVER_AFTER_WRITES = """
import os, signal, sys
from classbench import cli, runner
writes = {"n": 0}
original = runner._write
def write(*args, **kwargs):
    result = original(*args, **kwargs)
    if args[1]:
        writes["n"] += 1
        if writes["n"] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    return result
runner._write = write
sys.argv = ["classbench", *sys.argv[1:]]
cli.main()
"""


def test_kill_9_of_the_driver_then_the_same_command_finishes(ray_address: str, tree: Path, tmp_path: Path) -> None:
    model = model_folder("qwen2_vl")
    run(tree, tmp_path / "local", model, "closed-set", background="clutter", shuffles=2, batch_size=1,
        max_new_tokens=3)
    command = ["run", "--dataset", str(tree), "--model", f"hf:{model}", "--strategy", "closed-set", "--shuffles", "2",
               "--background", "clutter", "--batch-size", "1", "--max-new-tokens", "3", "--device", "cpu",
               "--no-progress", "--executor", "ray", "--workers", "2", "--ray-address", ray_address,
               "--out", str(tmp_path / "ray")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-c", KILL_DRIVER_AFTER_WRITES, *command], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    partial = stored(tmp_path / "ray")
    assert 0 < len(partial[0]) < 8
    again = subprocess.run([sys.executable, "-m", "classbench", *command], env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "resuming" in again.stderr, again.stderr
    assert stored(tmp_path / "ray") == stored(tmp_path / "local")
    assert partial[0] <= stored(tmp_path / "ray")[0], "what the killed driver stored is kept"


def test_a_sweep_under_ray_equals_a_local_sweep(ray_address: str, tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    from typer.testing import CliRunner

    from classbench.cli import app

    photos = make_tree(tmp_path / "photos", folders=("001.cat", "002.dog", "003.car"), per_class=2, background=False)
    base = ["sweep", "--dataset", str(photos), "--model", "efficientnet-lite0", "--classes", "2,3", "--batch-size",
            "2", "--device", "cpu", "--no-progress"]
    for name, extra in (("local", []), ("ray", ["--executor", "ray", "--workers", "2"])):
        result = CliRunner().invoke(app, [*base, *extra, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    for size in (2, 3):
        point = Path("efficientnet-lite0-direct") / f"n{size}"
        assert stored(tmp_path / "ray" / point) == stored(tmp_path / "local" / point)
    second = read_metrics(tmp_path / "ray" / "efficientnet-lite0-direct" / "n3")
    assert second["load_s"] == 0 and second["execution"]["executor"] == "ray", "each worker loaded the model once"


def test_a_probe_fitted_in_a_worker_is_written_by_the_driver(ray_address: str, tmp_path: Path) -> None:
    """Workers never write the run folder: the probe the first worker fits (on shots the driver sends
    it, with --ship-images) comes back through the driver, and the others reuse it."""
    import numpy as np

    from clip_helpers import colour_tree, tiny_model_folder

    tree = colour_tree(tmp_path / "tree", per_class=5)
    for out, executor in (("local", {}), ("ray", {"executor": "ray", "workers": 2, "ship_images": True})):
        spec = RunSpec.from_flat(dataset=str(tree), model=f"clip:{tiny_model_folder('clip')}", strategy="probe",
                                 shots=2, batch_size=2, device="cpu", **executor)
        runner.run(spec, tmp_path / out, log=lambda _: None)
    assert stored(tmp_path / "ray") == stored(tmp_path / "local")
    with np.load(tmp_path / "ray" / "probe.npz") as remote, np.load(tmp_path / "local" / "probe.npz") as here:
        assert all(np.array_equal(remote[key], here[key]) for key in here.files)
    assert (tmp_path / "ray" / "probe_split.json").read_text() == (tmp_path / "local" / "probe_split.json").read_text()


def test_ray_settings_without_the_ray_executor_are_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from classbench.cli import app

    photos = make_tree(tmp_path / "photos", folders=("001.cat", "002.dog"), per_class=1, background=False)
    result = CliRunner().invoke(app, ["run", "--dataset", str(photos), "--model", "efficientnet-lite0",
                                      "--workers", "4", "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and "--workers applies to Ray workers: add --executor ray" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_more_gpus_than_the_cluster_has_is_an_error_not_a_wait(ray_address: str, tree: Path, tmp_path: Path) -> None:
    from classbench.errors import UserError

    spec = RunSpec.from_flat(dataset=str(tree), model=f"hf:{model_folder('qwen2_vl')}", strategy="closed-set",
                             device="cpu", executor="ray", workers=2, gpus_per_worker=1)
    with pytest.raises(UserError, match="need 2 GPUs .* but the Ray cluster has 0"):
        runner.run(spec, tmp_path / "out", log=lambda _: None)
