"""How ``simulations.compare`` runs one run of its grid: in process, or through the Flower launcher.

Both hand back a ``Future`` per run resolving to the run's summary, and both can be stopped
at once (Ctrl-C, SIGTERM): queued runs are dropped and running ones ended, leaving their
directories without ``summary.json`` so that the next command runs them again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fedhyper import record, results
from fedhyper.record import Summary
from simulations import inprocess
from simulations.launch import APP_DIR


class InProcessEngine:
    """Runs in the command's worker processes (spawned, one torch thread each), ``parallel`` at a time.

    The workers (``inprocess.Workers``) belong to the command, not to the engine: they outlive a batch of
    runs for the next batch and for re-evaluations.
    """

    name = "inprocess"

    def __init__(self, workers: inprocess.Workers) -> None:
        self.workers = workers
        self.parallel = workers.size

    def submit(self, run_dir: Path, config: dict[str, Any], overrides: list[str], resume: bool) -> Future:
        return self.workers.executor.submit(inprocess.run_resolved, config, str(run_dir), resume)

    def close(self) -> None:
        pass  # every run has ended (the grid waited on each); the workers stay for what the command runs next

    def stop(self) -> None:
        self.workers.stop()


class FlowerEngine:
    """Runs one at a time, each exactly as ``python -m simulations.run`` does it; its output goes to run.log."""

    name = "flower"
    parallel = 1  # each run's Ray instance takes every core

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1)  # the thread only waits on the launcher
        self.running: subprocess.Popen | None = None
        self.stopping = threading.Event()

    def submit(self, run_dir: Path, config: dict[str, Any], overrides: list[str], resume: bool) -> Future:
        return self.executor.submit(self._run, run_dir, overrides, resume)

    def _run(self, run_dir: Path, overrides: list[str], resume: bool) -> Summary:
        args = [f"resume={run_dir}"] if resume else overrides
        cmd = [sys.executable, "-m", "simulations.run", *args, f"hydra.run.dir={run_dir}"]
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / record.LOG_FILE).open("a" if resume else "w") as log_file:
            if self.stopping.is_set():
                raise RuntimeError("the grid was stopped")
            self.running = subprocess.Popen(cmd, cwd=APP_DIR, stdout=log_file, stderr=subprocess.STDOUT)
            code = self.running.wait()
        if code != 0 or not results.is_finished(run_dir):
            raise RuntimeError(f"simulations.run exited with status {code}")
        return Summary.read(run_dir)

    def close(self) -> None:
        self.executor.shutdown()

    def stop(self) -> None:
        """Drop the queue; give the running launcher time to stop its SuperLink and Ray, else SIGTERM it."""
        self.stopping.set()
        self.executor.shutdown(wait=False, cancel_futures=True)
        proc = self.running
        if proc is not None:
            try:
                proc.wait(timeout=10)  # a terminal's Ctrl-C reached it too, and it is cleaning up
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)  # simulations.run stops everything it started on SIGTERM
                proc.wait()
        self.executor.shutdown()
