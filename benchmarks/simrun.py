"""Run ``python -m simulations.run`` once, in a throw-away directory, and read back its record.

With ``FEDHYPER_BENCH_ENGINE=inprocess`` in the environment the run goes through the same
checks and then runs on the in-process engine instead (no SuperLink, no Ray): the benchmarks'
own tests use it to check a benchmark's code in seconds. Figures labelled "flower" are then
not Flower's: never quote a benchmark run that way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedhyper import record

REPO = Path(__file__).resolve().parents[1]
ENGINE_ENV = "FEDHYPER_BENCH_ENGINE"  # flower (unset) or inprocess


@dataclass
class SimRecord:
    """A finished run: ``metrics.jsonl`` rows, ``summary.json``, the whole command's seconds and its log."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    command_s: float
    log: str = ""  # what the launcher wrote to its standard error (none in process)

    def round_ends(self) -> dict[int, float]:
        return {r["round"]: r["elapsed_s"] for r in self.rows}

    def eval_rounds(self) -> set[int]:
        return {r["round"] for r in self.rows if "accuracy" in r}


def read_record(run_dir: Path, start: float) -> SimRecord:
    """The record a run left in ``run_dir``, its command having started at ``start`` (time.monotonic)."""
    rows = [json.loads(line) for line in (run_dir / record.METRICS_FILE).read_text().splitlines()]
    summary = json.loads((run_dir / record.SUMMARY_FILE).read_text())
    return SimRecord(rows, summary, time.monotonic() - start)


def run_simulation(overrides: list[str], watch: Callable[[subprocess.Popen, Path], Any] | None = None) -> SimRecord:
    """Run the launcher with Hydra ``overrides``; ``watch(process, flwr_home)`` runs while it does."""
    if os.environ.get(ENGINE_ENV, "flower") == "inprocess":
        if watch is not None:
            raise ValueError(f"{ENGINE_ENV}=inprocess starts no process to watch")
        return run_in_process(overrides)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        cmd = [sys.executable, "-m", "simulations.run", *overrides, f"hydra.run.dir={tmp}"]
        log = Path(tmp) / "launcher.log"  # a file, not a pipe: a watcher does not read while it waits
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=out)
            if watch is not None:
                watch(proc, Path(tmp) / ".flwr")
            proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{log.read_text()[-3000:]}")
        done = read_record(Path(tmp), start)
        done.log = log.read_text(errors="replace")
        return done


def run_in_process(overrides: list[str]) -> SimRecord:
    """What ``run_simulation`` records, from the in-process engine after ``simulations.run``'s checks."""
    from simulations import inprocess, run  # imports torch and the apps: only when asked for

    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        inprocess.run_experiment(run.check(overrides), Path(tmp))
        return read_record(Path(tmp), start)
