"""Progress of a grid of runs: which runs are going, their round, and the time left.

The engines run each run elsewhere (a worker process, a ``simulations.run`` subprocess), so
progress is read from where every run records it anyway: the last row of its
``metrics.jsonl`` (``round``, ``elapsed_s``) and the round budget of the grid's configs.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fedhyper.record import Summary
from fedhyper.results import BASE_VARIANT, METRICS_FILE, run_label


@dataclass
class RunLabel:
    index: int  # 1-based position in the whole grid, finished runs included
    total: int
    strategy: str
    setting: str
    seed: int
    num_rounds: int
    run_dir: Path
    variant: str = BASE_VARIANT

    @property
    def name(self) -> str:
        """The strategy, and its variant unless it is the base one."""
        return run_label(self.strategy, self.variant)

    def __str__(self) -> str:
        return f"[{self.index}/{self.total}] {self.name} · {self.setting} · seed {self.seed}"


def written_since(path: Path, since: float) -> bool:
    """Whether ``path`` was written at or after ``since`` (a wall-clock time), allowing for coarse file times."""
    try:
        return path.stat().st_mtime >= since - 1.0
    except OSError:
        return False


def last_round(run_dir: Path, since: float) -> tuple[int, float] | None:
    """(round, elapsed seconds) of the run's last recorded round, if it recorded one since ``since``."""
    path = run_dir / METRICS_FILE
    if not written_since(path, since):
        return None
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a row being written
            continue
        return int(row["round"]), float(row["elapsed_s"])
    return None


@dataclass
class GridProgress:
    """The one reporter of a grid: a line when a run starts or ends, and a status line now and then."""

    pending: int  # runs to do in this invocation
    parallel: int
    write: Callable[[str], None] = functools.partial(print, flush=True)
    started_at: float = field(default_factory=time.time)
    durations: list[float] = field(default_factory=list)  # wall time of runs finished here
    done: int = 0
    failed: int = 0
    diverged: int = 0  # stopped unable to train, their training diverged (fedhyper.results.diverged): ended

    def _seen(self, label: RunLabel) -> tuple[int, float] | None:
        seen = last_round(label.run_dir, self.started_at)
        return seen if seen is not None and seen[0] > 0 else None

    def run_eta(self, label: RunLabel) -> tuple[str, float | None]:
        """Where a run is, and its seconds left (None until it finished a round)."""
        seen = self._seen(label)
        if seen is None:
            return "starting", None
        rnd, elapsed = seen
        left = elapsed / rnd * (label.num_rounds - rnd)
        return f"round {rnd}/{label.num_rounds}, {elapsed:.0f}s, ~{left:.0f}s left", left

    def grid_eta(self, running: list[RunLabel]) -> float | None:
        """Seconds left in the grid: the running runs' rest, then the queued runs at the mean run time.

        The mean run time is that of the runs finished so far, else the running runs' projection.
        """
        seen = [(label, self._seen(label)) for label in running]
        projected = [(e / r * label.num_rounds, e) for label, s in seen if s is not None for r, e in [s]]
        if self.durations:
            typical = statistics.fmean(self.durations)
        elif projected:
            typical = statistics.fmean(total for total, _ in projected)
        else:
            return None
        rest = sum(total - elapsed for total, elapsed in projected) + typical * (len(running) - len(projected))
        queued = self.pending - self.ended - len(running)
        return (rest + queued * typical) / max(1, self.parallel)

    def status(self, running: list[RunLabel]) -> None:
        for label in running:
            self.write(f"{label} — {self.run_eta(label)[0]}")
        eta = self.grid_eta(running)
        left = "estimating time left" if eta is None else f"~{_duration(eta)} left"
        finished = self.ended
        self.write(f"grid: {finished}/{self.pending} runs of this command finished, {left}")

    def started(self, label: RunLabel) -> None:
        self.write(f"{label} — started in {label.run_dir}")

    def finished(self, label: RunLabel, seconds: float, summary: Summary) -> None:
        self.done += 1
        self.durations.append(seconds)
        if summary.final_accuracy is not None:
            acc = f"final accuracy {100 * summary.final_accuracy:.2f}%, best {100 * summary.best_accuracy:.2f}%"
        elif summary.val_accuracy is not None:  # a tuning trial: the test split is never read
            acc = f"validation accuracy {100 * summary.val_accuracy:.2f}%"
        else:
            acc = "no evaluation"
        self.write(f"{label} — done in {seconds:.0f}s: {acc}")

    def failed_run(self, label: RunLabel, error: str) -> None:
        self.failed += 1
        self.write(f"{label} — FAILED: {error} (log: {label.run_dir / 'run.log'})")

    def diverged_run(self, label: RunLabel, error: str) -> None:
        self.diverged += 1
        self.write(f"{label} — DIVERGED, ended: {error} (log: {label.run_dir / 'run.log'})")

    @property
    def ended(self) -> int:
        return self.done + self.failed + self.diverged


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
