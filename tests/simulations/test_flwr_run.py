"""The repository is a Flower App: a bare ``flwr run .`` runs pFedHN on Flower's local federation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from simulations.launch import run_processes, stage_app, stop_run_processes

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.engine
def test_bare_flwr_run_trains_on_the_default_local_federation(tmp_path):
    flwr_home, run_dir = tmp_path / "flwr-home", tmp_path / "run"
    env = {
        **os.environ,
        "FLWR_HOME": str(flwr_home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RAY_ADDRESS": "local",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    overrides = "sim.num_rounds=2 sim.clients_per_round=2 data.subset=3000 strategy.local.steps=5"
    try:
        result = subprocess.run(
            ["flwr", "run", ".", "--stream", "--run-config", f"overrides='{overrides}' run-dir='{run_dir}'"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop_run_processes(flwr_home)  # flwr leaves its local SuperLink running, by design

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["strategy"] == "pfedhn" and summary["rounds"] == 2
    assert summary["num_clients"] == len(summary["per_client_accuracy"]) >= 2  # the federation's size
    assert run_processes(flwr_home) == []


def test_the_launchers_copy_of_the_app_sends_the_bundle_the_repository_would(tmp_path):
    (tmp_path / "app" / "fedhyper").mkdir(parents=True)
    (tmp_path / "app" / "fedhyper" / "stale.py").write_text("")  # left from an older copy: gone
    staged = stage_app(tmp_path / "app")

    assert staged == tmp_path / "app" and not (staged / "fedhyper" / "stale.py").exists()
    assert build_fab_from_disk(staged) == build_fab_from_disk(REPO)  # the same files, names and bytes
