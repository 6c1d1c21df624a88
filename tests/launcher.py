"""``python -m simulations.run`` as a user starts it, and the run record it leaves, for the engine tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from simulations.processes import run_processes

REPO = Path(__file__).resolve().parents[1]


def command(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "simulations.run", *overrides, f"hydra.run.dir={run_dir}"]


def run_simulation(run_dir: Path, *overrides: str, timeout: float = 600, **popen) -> subprocess.CompletedProcess:
    """Run the launcher to its end (``popen``: ``cwd``, ``env``); its output captured as text."""
    popen.setdefault("cwd", REPO)
    return subprocess.run(command(run_dir, *overrides), capture_output=True, text=True, timeout=timeout, **popen)


def start_simulation(run_dir: Path, *overrides: str) -> subprocess.Popen:
    """Start the launcher and return at once; its stderr is a text pipe."""
    cmd = command(run_dir, *overrides)
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def processes_left(run_dir: Path, timeout: float = 60) -> list[int]:
    """The processes of ``run_dir``'s engine still alive after waiting up to ``timeout`` s for them to go."""
    deadline = time.monotonic() + timeout
    while run_processes(run_dir / ".flwr") and time.monotonic() < deadline:
        time.sleep(0.5)
    return run_processes(run_dir / ".flwr")
