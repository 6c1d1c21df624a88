"""The one real Flower/Ray simulation that the engine tests of ``tests/simulations`` share.

Starting Ray costs more than a small run's rounds, so the claims that only need *a* finished
simulation on the real engine read one (the ``shared_run`` fixture of this folder's conftest):
``python -m simulations.run`` of pFedHN-PC on the CIFAR-10-shaped hub copy, with client-level
DP, MLflow tracking, and a quarter of each round's sampled clients ordered to raise, attached
(``sim.ray_address``) to a Ray cluster started for it with ``ray start``, as a simulation larger
than one machine runs. test_run.py asserts on its accuracies, faults, kept heads and the cluster
it ran on, test_privacy_engine.py on its ε rows, test_tracked_runs.py on its MLflow run,
test_datasets_engine.py on its colour CNN, and test_lifecycle.py that it left nothing running.
The launch's own Ray (``sim.ray_address=local``, the default) runs in test_lifecycle.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from simulations.launch import free_port, run_processes, stop_run_processes
from tests.launcher import REPO, processes_left, read_jsonl, run_simulation

NUM_CLIENTS, PER_ROUND, ROUNDS = 5, 4, 4
FAULTY_PER_ROUND = 1  # faults.fraction=0.25 of the 4 sampled clients
SIGMA, CLIP = 1.5, 2.0
SAVED = "finished-run.json"


@dataclass(frozen=True)
class FinishedRun:
    """A launcher run that ended: its command's result, its record, what it left running."""

    run_dir: Path
    launch_dir: Path  # the command's working directory: Hydra's outputs/ (the MLflow store) lives there
    result: subprocess.CompletedProcess
    left_running: list[int]
    cluster: RayCluster

    @cached_property
    def summary(self) -> dict:
        return json.loads((self.run_dir / "summary.json").read_text())

    @cached_property
    def rows(self) -> list[dict]:
        return read_jsonl(self.run_dir / "metrics.jsonl")

    @cached_property
    def replies(self) -> list[dict]:
        return read_jsonl(self.run_dir / "clients.jsonl")

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    # Saved for the other pytest-xdist workers, which read it instead of starting the engine again.
    @staticmethod
    def is_saved(launch_dir: Path) -> bool:
        return (launch_dir / SAVED).is_file()

    def save(self) -> None:
        saved = {
            "run_dir": str(self.run_dir),
            "left_running": self.left_running,
            "args": self.result.args,
            "returncode": self.result.returncode,
            "stdout": self.result.stdout,
            "stderr": self.result.stderr,
            "cluster": vars(self.cluster),
        }
        (self.launch_dir / SAVED).write_text(json.dumps(saved))

    @classmethod
    def load(cls, launch_dir: Path) -> FinishedRun:
        saved = json.loads((launch_dir / SAVED).read_text())
        result = subprocess.CompletedProcess(saved["args"], saved["returncode"], saved["stdout"], saved["stderr"])
        return cls(Path(saved["run_dir"]), launch_dir, result, saved["left_running"], RayCluster(**saved["cluster"]))


@dataclass
class RayCluster:
    """A one-machine Ray cluster: its address, and what the shared run did to it."""

    address: str
    home: str  # FLWR_HOME of every process of the cluster: what marks them
    drivers_added: int = 0  # driver logs the run added to the cluster's session
    processes_after_run: int = 0  # the cluster's processes once the run had ended
    left_running: list[int] | None = None  # the cluster's processes after it was stopped


@contextmanager
def ray_cluster(num_cpus: int) -> Iterator[tuple[RayCluster, Path]]:
    """``ray start --head`` on 127.0.0.1; yields the cluster and its session folder, then stops exactly it."""
    # Ray's socket paths must stay short: a folder of its own under /tmp, not pytest's deep tmp_path.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    marker = temp_dir / "head"  # every head process carries FLWR_HOME=<marker>: stop exactly those
    port = free_port()
    env = {**os.environ, "FLWR_HOME": str(marker), "RAY_USAGE_STATS_ENABLED": "0"}
    ray = str(Path(sys.executable).parent / "ray")
    cmd = [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", str(num_cpus),
           "--include-dashboard=false", "--ray-client-server-port", str(free_port()), "--temp-dir", str(temp_dir),
           "--disable-usage-stats"]  # fmt: skip
    cluster = RayCluster(f"127.0.0.1:{port}", str(marker))
    try:
        started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield cluster, temp_dir / "session_latest"
    finally:
        # Not `ray stop`: it stops every Ray instance on the machine, other users' included.
        stop_run_processes(marker, grace=2.0)  # some of Ray's processes wait out any grace on SIGTERM
        shutil.rmtree(temp_dir, ignore_errors=True)
        cluster.left_running = run_processes(marker)


def run_shared(launch_dir: Path, cifar10_copy: Path) -> FinishedRun:
    """Run the shared simulation from ``launch_dir``, into ``launch_dir/run``, on a Ray cluster of its own."""
    run_dir = launch_dir / "run"
    overrides = [
        "strategy=pfedhn_pc", "data=cifar10", f"data.root={cifar10_copy}", f"data.num_clients={NUM_CLIENTS}",
        f"sim.num_rounds={ROUNDS}", f"sim.clients_per_round={PER_ROUND}", "sim.eval_every=2", "strategy.local.steps=5",
        f"faults.fraction={FAULTY_PER_ROUND / PER_ROUND}", "faults.kind=raise",
        f"privacy.noise_multiplier={SIGMA}", f"privacy.clip={CLIP}", "privacy.max_epsilon=1000",
        "privacy.noise_seed=11", "tracking=mlflow", "seed=3",  # seeded noise: the same run every time
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # started from the launch directory, as a user in another folder
    with ray_cluster(num_cpus=1) as (cluster, session):  # one client actor: Ray's start-up is the cost here
        drivers = session / "logs"
        before = len(list(drivers.glob("python-core-driver-*")))
        result = run_simulation(run_dir, *overrides, f"sim.ray_address={cluster.address}", cwd=launch_dir, env=env)
        cluster.drivers_added = len(list(drivers.glob("python-core-driver-*"))) - before
        cluster.processes_after_run = len(run_processes(Path(cluster.home)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return FinishedRun(run_dir, launch_dir, result, processes_left(run_dir, timeout=10), cluster)
