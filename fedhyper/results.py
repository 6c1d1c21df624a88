"""Read finished runs back and compare them: one row a run, mean ± std over seeds, a Markdown report.

A run directory holds what ``fedhyper.reporting.RunReporter`` wrote: ``summary.json`` and
``metrics.jsonl``. Everything here is computed from those two files, so a report can be
rebuilt at any time from the run directories alone. Accuracies are fractions (0..1) on disk
and percentages in the report.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
# Per-round traffic keys written by the strategies (``<kind>_bytes_<direction>``).
TRAFFIC = ("train_bytes_sent", "train_bytes_received", "evaluate_bytes_sent", "evaluate_bytes_received")
BASE_VARIANT = "base"  # a strategy's configuration as the experiment gives it


def run_label(strategy: str, variant: str) -> str:
    """How a grid names a strategy's variant: the strategy alone for the base one, else ``strategy/variant``."""
    return strategy if variant == BASE_VARIANT else f"{strategy}/{variant}"


@dataclass
class RunResult:
    """One finished run, labelled with where it sits in the grid."""

    strategy: str
    variant: str
    setting: str
    seed: int
    engine: str
    num_clients: int
    rounds: int
    final_accuracy: float | None
    best_accuracy: float | None
    best_round: int | None
    # All clients' test examples pooled (the pFedHN paper's and PFLlib's accuracy), and the mean
    # over clients on their validation splits; None for runs written before they were recorded.
    final_accuracy_pooled: float | None
    best_accuracy_pooled: float | None
    val_accuracy: float | None
    # From summary.json when the run wrote them (held-out clients, a hypernetwork), else None.
    novel_accuracy: float | None
    generalization_gap: float | None
    hnet_parameters: int | None
    rounds_to_target: int | None  # first evaluated round at or above the target; None: never reached
    seconds_to_target: float | None
    wall_time_s: float
    # Bytes a round, averaged over the training rounds (round 0, the initial evaluation, excluded).
    train_bytes_sent_per_round: float
    train_bytes_received_per_round: float
    evaluate_bytes_sent_per_round: float
    evaluate_bytes_received_per_round: float
    run_dir: str
    curve: list[tuple[int, float]] = field(default_factory=list, repr=False)  # (round, mean accuracy)
    per_client_accuracy: list[float] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return run_label(self.strategy, self.variant)


CSV_FIELDS = [f for f in RunResult.__dataclass_fields__ if f not in ("curve", "per_client_accuracy")]


def is_finished(run_dir: Path) -> bool:
    """A run is finished once its ServerApp wrote ``summary.json`` (it is written last)."""
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def traffic_per_round(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Each traffic key summed over the training rounds (round >= 1) and divided by their number."""
    training = [r for r in rows if r["round"] >= 1]
    if not training:
        return dict.fromkeys(TRAFFIC, 0.0)
    return {key: sum(float(r.get(key, 0)) for r in training) / len(training) for key in TRAFFIC}


def first_reaching(rows: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first evaluated round whose mean accuracy is at least ``target``."""
    return next((r for r in rows if r.get("accuracy") is not None and r["accuracy"] >= target), None)


def _number(summary: dict[str, Any], key: str) -> float | None:
    """``summary[key]`` if it is a number; None when the run did not write it."""
    value = summary.get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def load_run(
    run_dir: Path, setting: str, seed: int, engine: str, target: float, variant: str = BASE_VARIANT
) -> RunResult:
    """Read a finished run; ``target`` is the accuracy (0..1) whose first crossing is reported."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    rows = read_metrics(run_dir)
    reached = first_reaching(rows, target)
    traffic = traffic_per_round(rows)
    hnet_parameters = _number(summary, "hnet_parameters")
    return RunResult(
        strategy=summary["strategy"],
        variant=variant,
        setting=setting,
        seed=seed,
        engine=engine,
        num_clients=summary["num_clients"],
        rounds=summary["rounds"],
        final_accuracy=summary["final_accuracy"],
        best_accuracy=summary["best_accuracy"],
        best_round=summary.get("best_round"),
        final_accuracy_pooled=_number(summary, "final_accuracy_pooled"),
        best_accuracy_pooled=_number(summary, "best_accuracy_pooled"),
        val_accuracy=_number(summary, "val_accuracy"),
        novel_accuracy=_number(summary, "novel_accuracy"),
        generalization_gap=_number(summary, "generalization_gap"),
        hnet_parameters=None if hnet_parameters is None else int(hnet_parameters),
        rounds_to_target=reached["round"] if reached else None,
        seconds_to_target=reached["elapsed_s"] if reached else None,
        wall_time_s=summary["wall_time_s"],
        **{f"{key}_per_round": value for key, value in traffic.items()},
        run_dir=str(run_dir),
        curve=[(r["round"], r["accuracy"]) for r in rows if r.get("accuracy") is not None],
        per_client_accuracy=list(summary.get("per_client_accuracy", [])),
    )


def write_csv(results: Iterable[RunResult], path: Path) -> None:
    """One row a run, the columns of ``CSV_FIELDS``; a run that never reached the target has an empty cell."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in results:
            row = asdict(r)
            writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_FIELDS})


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of the values that exist, and how many of ``n`` exist."""

    mean: float | None
    std: float | None
    count: int
    n: int


def stat(values: Sequence[float | None]) -> Stat:
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not present:
        return Stat(None, None, 0, len(values))
    std = statistics.stdev(present) if len(present) > 1 else None  # one seed: no spread to show
    return Stat(statistics.fmean(present), std, len(present), len(values))


def group(results: Iterable[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    """Runs by (setting, run label), in the order they first appear; a label names a strategy and its variant."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.setting, r.label), []).append(r)
    return groups


@dataclass(frozen=True)
class GroupSummary:
    setting: str
    strategy: str
    variant: str
    seeds: list[int]
    final_accuracy: Stat
    best_accuracy: Stat
    final_accuracy_pooled: Stat
    val_accuracy: Stat
    novel_accuracy: Stat  # the optional ones count 0 of n when the runs did not write them
    generalization_gap: Stat
    hnet_parameters: Stat
    rounds_to_target: Stat  # over the seeds that reached the target (count of n)
    wall_time_s: Stat
    train_bytes_sent_per_round: Stat
    train_bytes_received_per_round: Stat


_STAT_FIELDS = [f for f in GroupSummary.__dataclass_fields__ if f not in ("setting", "strategy", "variant", "seeds")]


def summarise(results: Iterable[RunResult]) -> list[GroupSummary]:
    """Mean ± std across seeds for every (setting, strategy, variant)."""
    out = []
    for (setting, _), runs in group(results).items():
        columns = {name: stat([getattr(r, name) for r in runs]) for name in _STAT_FIELDS}
        first = runs[0]
        out.append(GroupSummary(setting, first.strategy, first.variant, [r.seed for r in runs], **columns))
    return out


def _shown(s: Stat, fmt: Callable[[float], str]) -> str:
    """``mean ± std``; the mean alone from one seed; a dash when nothing was measured."""
    if s.mean is None:
        return "–"
    return fmt(s.mean) if s.std is None else f"{fmt(s.mean)} ± {fmt(s.std)}"


def _pct(s: Stat) -> str:
    return _shown(s, lambda v: f"{100 * v:.2f}")


def _rounds(s: Stat) -> str:
    if s.mean is None:
        return f"not reached (0/{s.n})"
    reached = "" if s.count == s.n else f" ({s.count}/{s.n})"
    return _shown(s, lambda v: f"{v:.1f}") + reached


def _seconds(s: Stat) -> str:
    return _shown(s, lambda v: f"{v:.1f}")


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _traffic(s: Stat) -> str:
    return _shown(s, human_bytes)


def _count(s: Stat) -> str:
    return "–" if s.mean is None else str(round(s.mean))  # the same for every seed of a config


# Columns that a table shows only when some of its runs wrote them: header, field, format.
_OPTIONAL_COLUMNS: list[tuple[str, str, Callable[[Stat], str]]] = [
    ("final pooled (%)", "final_accuracy_pooled", _pct),
    ("validation (%)", "val_accuracy", _pct),
    ("novel accuracy (%)", "novel_accuracy", _pct),
    ("generalization gap (pp)", "generalization_gap", _pct),
    ("hnet parameters", "hnet_parameters", _count),
]


def markdown_table(groups: Sequence[GroupSummary], target: float) -> str:
    """One Markdown table: a row per strategy and variant, mean ± std across its seeds."""
    optional = [c for c in _OPTIONAL_COLUMNS if any(getattr(g, c[1]).count for g in groups)]
    head = [
        "strategy" if all(g.variant == BASE_VARIANT for g in groups) else "strategy/variant",
        "seeds",
        "final accuracy (%)",
        "best accuracy (%)",
        *(name for name, _, _ in optional),
        f"rounds to {100 * target:g}%",
        "wall time (s)",
        "sent / round",
        "received / round",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [
            run_label(g.strategy, g.variant),
            str(len(g.seeds)),
            _pct(g.final_accuracy),
            _pct(g.best_accuracy),
            *(fmt(getattr(g, key)) for _, key, fmt in optional),
            _rounds(g.rounds_to_target),
            _seconds(g.wall_time_s),
            _traffic(g.train_bytes_sent_per_round),
            _traffic(g.train_bytes_received_per_round),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(
    results: Sequence[RunResult], target: float, settings: dict[str, list[str]], plots: dict[str, list[str]]
) -> str:
    """The whole report: per data setting its overrides, the table (a row per run label) and its plots (file names)."""
    lines = [
        "# Strategy comparison",
        "",
        "Mean ± sample std across seeds (the mean alone for one seed). Accuracy: mean over clients of "
        "each client's personalised model on its own test split (final: last evaluation; best: best "
        "evaluation); pooled: all clients' test examples together; validation: mean over clients on their "
        "validation splits (what tuning reads). Rounds to target: the first evaluated round at or above it, "
        "over the seeds that reached it. Traffic: training bytes sent to the clients and received from them, "
        "averaged over rounds. "
        "Where runs report them: novel accuracy, that of the clients held out of training (novel_clients) and "
        "personalised afterwards, and the generalization gap from the trained clients' accuracy, in percentage points; "
        "hnet parameters, the hypernetwork's size.",
    ]
    by_setting: dict[str, list[GroupSummary]] = {}
    for g in summarise(results):
        by_setting.setdefault(g.setting, []).append(g)
    for setting, groups in by_setting.items():
        engines = sorted({r.engine for r in results if r.setting == setting})
        overrides = " ".join(settings.get(setting, [])) or "(none)"
        lines += ["", f"## Setting `{setting}`", "", f"Overrides: `{overrides}`; engine: {', '.join(engines)}.", ""]
        lines.append(markdown_table(groups, target))
        lines += [""] + [f"![{name}]({name})" for name in plots.get(setting, [])]
    return "\n".join(lines) + "\n"
