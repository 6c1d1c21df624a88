"""The run's record as it is written: per-round rows as JSON lines, progress lines, and summary.json.

Names of files and metrics come from ``fedhyper.record``; the summary is a ``record.Summary``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from fedhyper import record
from fedhyper.record import Summary
from fedhyper.tracking import OFF, RunTracking

log = logging.getLogger("fedhyper")


class RunReporter:
    """Writes ``metrics.jsonl`` as rounds finish and ``summary.json`` at the end."""

    def __init__(
        self,
        run_dir: Path,
        strategy: str,
        num_clients: int,
        num_rounds: int,
        fresh: bool = True,
        tracking: RunTracking = OFF,  # also hands rows and summary to TensorBoard or MLflow (fedhyper.tracking)
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.strategy, self.num_clients, self.num_rounds = strategy, num_clients, num_rounds
        self.metrics_path = self.run_dir / record.METRICS_FILE
        self.clients_path = self.run_dir / record.CLIENTS_FILE  # one row per client reply
        if fresh:  # a resumed record keeps its files until load_state_dict trims them
            self.metrics_path.write_text("")
            self.clients_path.write_text("")
        (self.run_dir / record.IDLE_FILE).unlink(missing_ok=True)  # an earlier run's here stopped idle
        self.start = time.monotonic()
        self.cpu_start: float | None = time.process_time()  # None: resumed from a record that did not count it
        self.history: list[dict[str, Any]] = []
        self.tracking = tracking

    def record(self, server_round: int, values: dict[str, Any], clients: list[dict[str, Any]]) -> None:
        """Append one round's metrics and its clients' replies, and log a progress line."""
        elapsed = time.monotonic() - self.start
        row = {record.ROUND: server_round, record.ELAPSED_S: round(elapsed, 3), **values}
        self.history.append(row)
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        with self.clients_path.open("a") as fh:
            fh.writelines(json.dumps({record.ROUND: server_round, **c}) + "\n" for c in clients)
        self.tracking.record(self.history)
        parts = [f"round {server_round}/{self.num_rounds}"]
        for key, label in ((record.TRAIN_LOSS, "train loss"), (record.ACCURACY, "mean accuracy"),
                           (record.VAL_ACCURACY, "validation")):  # fmt: skip
            if key in row:
                parts.append(f"{label} {row[key]:.4f}")
        if server_round:
            eta = elapsed / server_round * (self.num_rounds - server_round)
            parts.append(f"{elapsed:.0f}s elapsed, ~{eta:.0f}s left")
        log.info(" | ".join(parts))

    def cpu_seconds(self) -> float | None:
        """CPU seconds this process spent on the run so far (resumed parts included); None when not known."""
        return None if self.cpu_start is None else time.process_time() - self.cpu_start

    def evaluations(self) -> list[dict[str, Any]]:
        """The evaluated rounds' rows: test metrics, validation metrics, or both."""
        return [row for row in self.history if record.ACCURACY in row or record.VAL_ACCURACY in row]

    def state_dict(self) -> dict[str, Any]:
        state = {"history": list(self.history), "elapsed_s": time.monotonic() - self.start}
        if (cpu := self.cpu_seconds()) is not None:
            state["cpu_s"] = cpu
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a checkpointed record: rows after its last round are dropped from the files."""
        self.history = list(state["history"])
        self.start = time.monotonic() - state["elapsed_s"]
        self.cpu_start = time.process_time() - state["cpu_s"] if "cpu_s" in state else None
        last = self.history[-1][record.ROUND] if self.history else -1
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        old = self.clients_path.read_text().splitlines(True) if self.clients_path.exists() else []
        self.clients_path.write_text("".join(line for line in old if json.loads(line)[record.ROUND] <= last))

    def gpu_training_share(self) -> float | None:
        """The share of the run's valid training replies that clients computed on a GPU; None: none reported it."""
        rows = [r for r in self.history if record.TRAIN_GPU_CLIENTS in r and r.get(record.TRAIN_CLIENTS)]
        if not rows:
            return None
        return sum(r[record.TRAIN_GPU_CLIENTS] for r in rows) / sum(r[record.TRAIN_CLIENTS] for r in rows)

    def seconds_to_accuracy(self, targets: tuple[float, ...] = (0.9, 0.95, 0.96)) -> dict[str, float | None]:
        """For each target, the elapsed time at the first evaluation that reached it."""
        evals = self.evaluations()
        return {
            f"{t:.2f}": next((r[record.ELAPSED_S] for r in evals if r.get(record.ACCURACY, -1) >= t), None)
            for t in targets
        }

    def stopped_idle(self, server_round: int, reason: str, diverged: bool) -> None:
        """Record that the run stopped at ``server_round`` unable to train (``record.IDLE_FILE``)."""
        idle = {record.ROUND: server_round, "reason": reason, record.DIVERGED: diverged}
        (self.run_dir / record.IDLE_FILE).write_text(json.dumps(idle, indent=2))

    def finish(
        self, per_client_accuracy: dict[int, float], widths: dict[int, float] | None = None, **extra: Any
    ) -> Summary:
        """Write summary.json from the history and the last per-client accuracies.

        ``widths`` (client id -> width multiplier) adds ``accuracy_by_width``, the mean accuracy
        of each width's clients, when the clients run more than one width. ``extra`` sets the
        summary's other fields (a name ``Summary`` lacks is a TypeError).
        """
        evals = self.evaluations()
        if widths and len({widths[c] for c in per_client_accuracy}) > 1:
            extra = {"accuracy_by_width": accuracy_by_width(per_client_accuracy, widths), **extra}
        tested = [r for r in evals if record.ACCURACY in r]
        best = max(tested, key=lambda r: r[record.ACCURACY], default=None)
        summary = Summary(
            strategy=self.strategy,
            num_clients=self.num_clients,
            rounds=max((r[record.ROUND] for r in self.history), default=0),
            final_accuracy=tested[-1][record.ACCURACY] if tested else None,
            best_accuracy=best[record.ACCURACY] if best else None,
            best_round=best[record.ROUND] if best else None,
            final_accuracy_pooled=tested[-1].get(record.ACCURACY_POOLED) if tested else None,
            best_accuracy_pooled=best_value(tested, record.ACCURACY_POOLED),
            val_accuracy=last_value(evals, record.VAL_ACCURACY),
            best_val_accuracy=best_value(evals, record.VAL_ACCURACY),
            val_accuracy_pooled=last_value(evals, record.VAL_ACCURACY_POOLED),
            per_client_accuracy=[per_client_accuracy[c] for c in sorted(per_client_accuracy)],
            wall_time_s=round(time.monotonic() - self.start, 3),
            seconds_to_accuracy=self.seconds_to_accuracy(),
            initial_accuracy=evals[0].get(record.ACCURACY) if evals and evals[0][record.ROUND] == 0 else None,
            gpu_training_share=self.gpu_training_share(),
            **extra,
        )
        summary.write(self.run_dir)
        self.tracking.finish(summary)
        log.info(
            "done: %s on %d clients, %d rounds, final accuracy %s, best %s, %.0fs",
            self.strategy,
            self.num_clients,
            summary.rounds,
            _fmt(summary.final_accuracy),
            _fmt(summary.best_accuracy),
            summary.wall_time_s,
        )
        return summary


def last_value(rows: list[dict[str, Any]], key: str) -> Any:
    """``key`` of the last row that has it, or None."""
    return next((r[key] for r in reversed(rows) if key in r), None)


def best_value(rows: list[dict[str, Any]], key: str) -> Any:
    """The largest ``key`` of the rows that have it, or None."""
    return max((r[key] for r in rows if key in r), default=None)


def accuracy_by_width(per_client_accuracy: dict[int, float], widths: dict[int, float]) -> dict[str, float]:
    """Mean accuracy of each width's clients, keyed by the width as text ("0.5"), narrowest first."""
    groups: dict[float, list[float]] = {}
    for cid, acc in per_client_accuracy.items():
        groups.setdefault(float(widths[cid]), []).append(acc)
    return {str(w): sum(groups[w]) / len(groups[w]) for w in sorted(groups)}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
