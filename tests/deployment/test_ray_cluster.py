"""A simulation larger than one machine: ``simulations.run`` attaches to a running Ray cluster."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from simulations.launch import free_port, run_processes, stop_run_processes

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
pytestmark = pytest.mark.engine


@pytest.fixture
def ray_head():
    """A one-machine Ray cluster on 127.0.0.1; yields its address and session folder."""
    # Ray's socket paths must stay short: a folder of its own under /tmp, not pytest's deep tmp_path.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    marker = temp_dir / "head"  # every head process carries FLWR_HOME=<marker>: stop exactly those
    port = free_port()
    env = {**os.environ, "FLWR_HOME": str(marker), "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
           "--include-dashboard=false", "--ray-client-server-port", str(free_port()), "--temp-dir", str(temp_dir),
           "--disable-usage-stats"]  # fmt: skip
    try:
        started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield f"127.0.0.1:{port}", temp_dir / "session_latest"
    finally:
        # Not `ray stop`: it stops every Ray instance on the machine, other users' included.
        stop_run_processes(marker, grace=2.0)  # some of Ray's processes wait out any grace on SIGTERM
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert run_processes(marker) == []


def test_a_simulation_attaches_to_a_running_ray_cluster(tmp_path, ray_head):
    address, session = ray_head
    drivers_before = list((session / "logs").glob("python-core-driver-*"))
    cmd = [sys.executable, "-m", "simulations.run", "data.num_clients=3", "data.subset=2000", "sim.num_rounds=2",
           "sim.clients_per_round=2", "sim.eval_every=2", "strategy.local.steps=5", f"sim.ray_address={address}",
           f"hydra.run.dir={tmp_path}"]  # fmt: skip

    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_clients"] == 3 and summary["rounds"] == 2
    # The simulation's driver ran on this cluster (a private Ray would log into a session of its own).
    assert len(list((session / "logs").glob("python-core-driver-*"))) > len(drivers_before)
    assert run_processes(tmp_path / ".flwr") == []
