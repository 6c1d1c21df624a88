"""Read finished runs back and compare them: one row a run, mean ± std over seeds.

A run directory holds what ``fedhyper.reporting.RunReporter`` wrote: ``summary.json`` (a
``record.Summary``) and ``metrics.jsonl``. Everything here is computed from those two files, so a
comparison can be rebuilt at any time from the run directories alone. Accuracies are fractions
(0..1). Markdown and plots of a comparison are the launcher's (``simulations/report.py``,
``simulations/plots.py``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedhyper import record
from fedhyper.record import METRICS_FILE, SUMMARY_FILE, Summary

__all__ = ["METRICS_FILE", "SUMMARY_FILE"]  # also read here by the grid's progress, tuning and tracking

# Per-round traffic keys written by the round loop (``<phase>_bytes_<direction>``).
TRAFFIC = (
    record.TRAIN_BYTES_SENT,
    record.TRAIN_BYTES_RECEIVED,
    record.EVALUATE_BYTES_SENT,
    record.EVALUATE_BYTES_RECEIVED,
)
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
    # The last evaluation: the clients whose replies it counted and those it rejected (a timeout, a
    # fault, a malformed or non-finite reply); None where the run's record does not say.
    final_eval_clients: int | None = None
    final_evaluate_rejected: int | None = None
    gpu_training_share: float | None = None  # summary.json's: the training replies computed on a GPU; None: unknown
    cpu_time_s: float | None = None  # summary.json's (record.Summary.cpu_time_s): in-process runs; None: not counted
    machine: str | None = None  # what ran it (record.machine_label); None: recorded before summaries said
    curve: list[tuple[int, float]] = field(default_factory=list, repr=False)  # (round, mean accuracy)
    per_client_accuracy: list[float] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return run_label(self.strategy, self.variant)


CSV_FIELDS = [f for f in RunResult.__dataclass_fields__ if f not in ("curve", "per_client_accuracy")]


def is_finished(run_dir: Path) -> bool:
    """A run is finished once its ServerApp wrote ``summary.json`` (it is written last)."""
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def diverged(run_dir: Path) -> bool:
    """The run stopped unable to train because its training diverged (``record.IDLE_FILE``)."""
    idle = Path(run_dir) / record.IDLE_FILE
    return idle.is_file() and bool(json.loads(idle.read_text())[record.DIVERGED])


def has_ended(run_dir: Path) -> bool:
    """Finished, or diverged: running it again would give the same."""
    return is_finished(run_dir) or diverged(run_dir)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def traffic_per_round(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Each traffic key summed over the training rounds (round >= 1) and divided by their number."""
    training = [r for r in rows if r[record.ROUND] >= 1]
    if not training:
        return dict.fromkeys(TRAFFIC, 0.0)
    return {key: sum(float(r.get(key, 0)) for r in training) / len(training) for key in TRAFFIC}


def first_reaching(rows: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first evaluated round whose mean accuracy is at least ``target``."""
    return next((r for r in rows if r.get(record.ACCURACY) is not None and r[record.ACCURACY] >= target), None)


def last_evaluation(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The last row with a test accuracy (the run's last evaluation); {} when none has one."""
    return next((r for r in reversed(rows) if r.get(record.ACCURACY) is not None), {})


def load_run(run_dir: Path, setting: str, seed: int, target: float, variant: str = BASE_VARIANT) -> RunResult:
    """Read a finished run; ``target`` is the accuracy (0..1) whose first crossing is reported. Its engine is
    the one that ran it (``record.engine_of``), whatever grid reads it."""
    run_dir = Path(run_dir)
    summary = Summary.read(run_dir)
    rows = read_metrics(run_dir)
    reached = first_reaching(rows, target)
    last = last_evaluation(rows)
    return RunResult(
        strategy=summary.strategy,
        variant=variant,
        setting=setting,
        seed=seed,
        engine=record.engine_of(summary),
        num_clients=summary.num_clients,
        rounds=summary.rounds,
        final_accuracy=summary.final_accuracy,
        best_accuracy=summary.best_accuracy,
        best_round=summary.best_round,
        final_accuracy_pooled=summary.final_accuracy_pooled,
        best_accuracy_pooled=summary.best_accuracy_pooled,
        val_accuracy=summary.val_accuracy,
        novel_accuracy=summary.novel_accuracy,
        generalization_gap=summary.generalization_gap,
        hnet_parameters=summary.hnet_parameters,
        rounds_to_target=reached[record.ROUND] if reached else None,
        seconds_to_target=reached[record.ELAPSED_S] if reached else None,
        wall_time_s=summary.wall_time_s,
        **{f"{key}_per_round": value for key, value in traffic_per_round(rows).items()},
        run_dir=str(run_dir),
        final_eval_clients=last.get(record.EVAL_CLIENTS),
        final_evaluate_rejected=last.get(record.EVALUATE_REJECTED),
        gpu_training_share=summary.gpu_training_share,
        cpu_time_s=summary.cpu_time_s,
        machine=record.machine_label(summary.machine),
        curve=[(r[record.ROUND], r[record.ACCURACY]) for r in rows if r.get(record.ACCURACY) is not None],
        per_client_accuracy=list(summary.per_client_accuracy),
    )


def write_csv(results: Iterable[RunResult], path: Path, root: Path | None = None) -> None:
    """One row a run, the columns of ``CSV_FIELDS``; a run that never reached the target has an empty cell.

    A run folder under ``root`` (the file's own folder when None) is written relative to the file's
    folder (``../runs/...`` for a report in a subfolder of its grid), so that the file and its runs can be
    committed or moved together; one elsewhere keeps its path as given.
    """
    path = Path(path)
    home = path.parent.resolve()
    root = home if root is None else Path(root).resolve()
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in results:
            row = asdict(r)
            run_dir = Path(row["run_dir"]).resolve()
            if run_dir.is_relative_to(root):
                row["run_dir"] = Path(os.path.relpath(run_dir, home)).as_posix()
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
    cpu_time_s: Stat  # over the seeds that counted it (count of n)
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


# Two-sided 95% quantiles of Student's t by degrees of freedom (seeds − 1).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}  # fmt: skip


def t95(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom: the nearest tabulated df at or below,
    never narrower than the true interval."""
    return _T95[max(k for k in _T95 if k <= df)]


def paired_interval(differences: Sequence[float]) -> tuple[float, float | None]:
    """Mean of paired differences and the half-width of its 95% t-interval; None from a single pair."""
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return mean, None
    return mean, t95(len(differences) - 1) * statistics.stdev(differences) / math.sqrt(len(differences))


@dataclass(frozen=True)
class PairedDifference:
    """A run label's accuracy minus that of the best other label of its setting, paired by seed."""

    setting: str
    label: str
    reference: str  # the label compared with: the best other (highest mean final accuracy), or the one asked for
    mean: float
    half_width: float | None  # of the 95% t-interval over seeds; None from one common seed
    seeds: int  # seeds both labels ran


def paired_differences(results: Iterable[RunResult], reference: str = "") -> list[PairedDifference]:
    """For every label, mean final accuracy difference to the best *other* label, with a 95% t-interval.

    The best label's difference is to the runner-up (positive if it leads on average); every other
    label's is to the best one. With ``reference`` (a run label: an ablation's full method) every
    other label of a setting that has it is compared with it instead, and it with the best other.
    Pairs are the seeds both ran: the same partitions and initial draws.
    """
    by_setting: dict[str, dict[str, dict[int, float]]] = {}
    for r in results:
        if r.final_accuracy is not None:
            by_setting.setdefault(r.setting, {}).setdefault(r.label, {})[r.seed] = r.final_accuracy
    out = []
    for setting, labels in by_setting.items():
        means = {label: statistics.fmean(v.values()) for label, v in labels.items()}
        for label, values in labels.items():
            others = [o for o in labels if o != label]
            if not others:
                continue
            other = reference if reference in others else max(others, key=means.__getitem__)
            seeds = sorted(set(values) & set(labels[other]))
            if not seeds:
                continue
            mean, half = paired_interval([values[s] - labels[other][s] for s in seeds])
            out.append(PairedDifference(setting, label, other, mean, half, len(seeds)))
    return out
