"""A run that is interrupted or killed leaves no process behind, and resumes exactly."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulations.launch import run_processes

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "data.num_clients=4",
    "data.subset=3000",
    "sim.clients_per_round=2",
    "sim.eval_every=2",
    "strategy.local.steps=5",
    "seed=2",
]


def processes_of(run_dir: Path) -> list[int]:
    return run_processes(run_dir / ".flwr")


def wait_for_rounds(run_dir: Path, rounds: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early with code {proc.returncode}")
        if metrics.exists() and len(metrics.read_text().splitlines()) > rounds:
            return
        time.sleep(0.2)
    raise AssertionError(f"no round {rounds} within {timeout}s")


def wait_until_gone(run_dir: Path, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while processes_of(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    return processes_of(run_dir)


def start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "simulations.run", *SMALL, *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_every_process_the_run_started(tmp_path, sig):
    proc = start(tmp_path, "sim.num_rounds=300")
    wait_for_rounds(tmp_path, 2, proc)
    assert processes_of(tmp_path)  # the engine is up: the check below can fail

    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert wait_until_gone(tmp_path) == []


def test_a_killed_run_resumes_to_the_same_result_as_an_uninterrupted_one(tmp_path):
    whole_dir, split_dir = tmp_path / "whole", tmp_path / "split"
    rounds = ["sim.num_rounds=40", "sim.checkpoint_every=4"]  # long enough to be killed mid-way
    whole = start(whole_dir, *rounds)
    _, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, err[-2000:]

    split = start(split_dir, *rounds)
    wait_for_rounds(split_dir, 9, split)
    split.send_signal(signal.SIGKILL)
    split.wait()
    assert wait_until_gone(split_dir) == []  # the engine followed its launcher down
    assert not (split_dir / "summary.json").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "simulations.run", f"resume={split_dir}"], cwd=REPO, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((whole_dir / "summary.json").read_text())
    b = json.loads((split_dir / "summary.json").read_text())
    assert b["per_client_accuracy"] == a["per_client_accuracy"]
    assert b["final_accuracy"] == a["final_accuracy"] and b["rounds"] == 40
    losses = [json.loads(line).get("train_loss") for line in (split_dir / "metrics.jsonl").read_text().splitlines()]
    assert losses == [
        json.loads(line).get("train_loss") for line in (whole_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert wait_until_gone(split_dir) == []


def test_resuming_from_a_directory_without_a_checkpoint_is_a_config_error(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 0\n")

    result = subprocess.run(
        [sys.executable, "-m", "simulations.run", f"resume={tmp_path}"], cwd=REPO, capture_output=True, text=True
    )

    assert result.returncode == 2
    assert "no checkpoint" in result.stderr


def test_a_run_that_ends_or_fails_leaves_nothing_running(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "simulations.run", *SMALL, "sim.num_rounds=2", f"hydra.run.dir={tmp_path / 'ok'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    # 12 examples for 4 clients: the clients cannot even describe themselves, the ServerApp gives up.
    failed = subprocess.run(
        [sys.executable, "-m", "simulations.run", *SMALL, "data.subset=12", f"hydra.run.dir={tmp_path / 'bad'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )

    assert ok.returncode == 0, ok.stderr[-2000:]
    assert failed.returncode == 1 and "the run failed" in failed.stderr
    assert wait_until_gone(tmp_path / "ok", timeout=10) == []
    assert wait_until_gone(tmp_path / "bad", timeout=10) == []
