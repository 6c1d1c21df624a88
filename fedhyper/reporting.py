"""The run's record: per-round metrics as JSON lines, progress lines, and summary.json."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("fedhyper")


class RunReporter:
    """Writes ``metrics.jsonl`` as rounds finish and ``summary.json`` at the end."""

    def __init__(self, run_dir: Path, strategy: str, num_clients: int, num_rounds: int, fresh: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.strategy, self.num_clients, self.num_rounds = strategy, num_clients, num_rounds
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.clients_path = self.run_dir / "clients.jsonl"  # one row per client reply
        if fresh:  # a resumed record keeps its files until load_state_dict trims them
            self.metrics_path.write_text("")
            self.clients_path.write_text("")
        self.start = time.monotonic()
        self.history: list[dict[str, Any]] = []

    def record(self, server_round: int, values: dict[str, Any], clients: list[dict[str, Any]]) -> None:
        """Append one round's metrics and its clients' replies, and log a progress line."""
        elapsed = time.monotonic() - self.start
        row = {"round": server_round, "elapsed_s": round(elapsed, 3), **values}
        self.history.append(row)
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        with self.clients_path.open("a") as fh:
            fh.writelines(json.dumps({"round": server_round, **c}) + "\n" for c in clients)
        parts = [f"round {server_round}/{self.num_rounds}"]
        if "train_loss" in row:
            parts.append(f"train loss {row['train_loss']:.4f}")
        if "accuracy" in row:
            parts.append(f"mean accuracy {row['accuracy']:.4f}")
        if "val_accuracy" in row:
            parts.append(f"validation {row['val_accuracy']:.4f}")
        if server_round:
            eta = elapsed / server_round * (self.num_rounds - server_round)
            parts.append(f"{elapsed:.0f}s elapsed, ~{eta:.0f}s left")
        log.info(" | ".join(parts))

    def evaluations(self) -> list[dict[str, Any]]:
        """The evaluated rounds' rows: test metrics, validation metrics, or both."""
        return [row for row in self.history if "accuracy" in row or "val_accuracy" in row]

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "elapsed_s": time.monotonic() - self.start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a checkpointed record: rows after its last round are dropped from the files."""
        self.history = list(state["history"])
        self.start = time.monotonic() - state["elapsed_s"]
        last = self.history[-1]["round"] if self.history else -1
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        old = self.clients_path.read_text().splitlines(True) if self.clients_path.exists() else []
        self.clients_path.write_text("".join(line for line in old if json.loads(line)["round"] <= last))

    def seconds_to_accuracy(self, targets: tuple[float, ...] = (0.9, 0.95, 0.96)) -> dict[str, float | None]:
        """For each target, the elapsed time at the first evaluation that reached it."""
        evals = self.evaluations()
        return {f"{t:.2f}": next((r["elapsed_s"] for r in evals if r.get("accuracy", -1) >= t), None) for t in targets}

    def finish(
        self, per_client_accuracy: dict[int, float], widths: dict[int, float] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Write summary.json from the history and the last per-client accuracies.

        ``widths`` (client id -> width multiplier) adds ``accuracy_by_width``, the mean accuracy
        of each width's clients, when the clients run more than one width.
        """
        evals = self.evaluations()
        if widths and len({widths[c] for c in per_client_accuracy}) > 1:
            extra = {"accuracy_by_width": accuracy_by_width(per_client_accuracy, widths), **extra}
        tested = [r for r in evals if "accuracy" in r]
        best = max(tested, key=lambda r: r["accuracy"], default=None)
        summary = {
            "strategy": self.strategy,
            "num_clients": self.num_clients,
            "rounds": max((r["round"] for r in self.history), default=0),
            "final_accuracy": tested[-1]["accuracy"] if tested else None,
            "best_accuracy": best["accuracy"] if best else None,
            "best_round": best["round"] if best else None,
            # every client's test examples together (the pFedHN paper's and PFLlib's accuracy)
            "final_accuracy_pooled": tested[-1].get("accuracy_pooled") if tested else None,
            "best_accuracy_pooled": max((r["accuracy_pooled"] for r in tested if "accuracy_pooled" in r), default=None),
            # mean over clients of each client's accuracy on its own validation split: what tuning reads
            "val_accuracy": last_value(evals, "val_accuracy"),
            "best_val_accuracy": max((r["val_accuracy"] for r in evals if "val_accuracy" in r), default=None),
            "val_accuracy_pooled": last_value(evals, "val_accuracy_pooled"),
            "per_client_accuracy": [per_client_accuracy[c] for c in sorted(per_client_accuracy)],
            "wall_time_s": round(time.monotonic() - self.start, 3),
            "seconds_to_accuracy": self.seconds_to_accuracy(),
            "initial_accuracy": evals[0].get("accuracy") if evals and evals[0]["round"] == 0 else None,
            **extra,
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        log.info(
            "done: %s on %d clients, %d rounds, final accuracy %s, best %s, %.0fs",
            self.strategy,
            self.num_clients,
            summary["rounds"],
            _fmt(summary["final_accuracy"]),
            _fmt(summary["best_accuracy"]),
            summary["wall_time_s"],
        )
        return summary


def last_value(rows: list[dict[str, Any]], key: str) -> Any:
    """``key`` of the last row that has it, or None."""
    return next((r[key] for r in reversed(rows) if key in r), None)


def accuracy_by_width(per_client_accuracy: dict[int, float], widths: dict[int, float]) -> dict[str, float]:
    """Mean accuracy of each width's clients, keyed by the width as text ("0.5"), narrowest first."""
    groups: dict[float, list[float]] = {}
    for cid, acc in per_client_accuracy.items():
        groups.setdefault(float(widths[cid]), []).append(acc)
    return {str(w): sum(groups[w]) / len(groups[w]) for w in sorted(groups)}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
