"""The one real Flower/Ray simulation that the engine tests of ``tests/simulations`` share.

Starting Ray costs more than a small run's rounds, so the claims that only need *a* finished
simulation on the real engine read one (the ``shared_run`` fixture of this folder's conftest):
``python -m simulations.run`` of pFedHN-PC on the CIFAR-10-shaped hub copy, with client-level
DP, MLflow tracking, and a quarter of each round's sampled clients ordered to raise.
test_run.py asserts on its accuracies, faults and kept heads, test_privacy_engine.py on its ε
rows, test_tracked_runs.py on its MLflow run, test_datasets_engine.py on its colour CNN, and
test_lifecycle.py that it left nothing running.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

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
        }
        (self.launch_dir / SAVED).write_text(json.dumps(saved))

    @classmethod
    def load(cls, launch_dir: Path) -> FinishedRun:
        saved = json.loads((launch_dir / SAVED).read_text())
        result = subprocess.CompletedProcess(saved["args"], saved["returncode"], saved["stdout"], saved["stderr"])
        return cls(Path(saved["run_dir"]), launch_dir, result, saved["left_running"])


def run_shared(launch_dir: Path, cifar10_copy: Path) -> FinishedRun:
    """Run the shared simulation from ``launch_dir``, into ``launch_dir/run``."""
    run_dir = launch_dir / "run"
    overrides = [
        "strategy=pfedhn_pc", "data=cifar10", f"data.root={cifar10_copy}", f"data.num_clients={NUM_CLIENTS}",
        f"sim.num_rounds={ROUNDS}", f"sim.clients_per_round={PER_ROUND}", "sim.eval_every=2", "strategy.local.steps=5",
        f"faults.fraction={FAULTY_PER_ROUND / PER_ROUND}", "faults.kind=raise",
        f"privacy.noise_multiplier={SIGMA}", f"privacy.clip={CLIP}", "privacy.max_epsilon=1000",
        "privacy.noise_seed=11", "tracking=mlflow", "seed=3",  # seeded noise: the same run every time
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # started from the launch directory, as a user in another folder
    result = run_simulation(run_dir, *overrides, cwd=launch_dir, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return FinishedRun(run_dir, launch_dir, result, processes_left(run_dir, timeout=10))
