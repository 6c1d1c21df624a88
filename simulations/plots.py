"""Comparison plots: accuracy against rounds, and how accuracy spreads over clients, per strategy.

Drawn with Matplotlib's object API on the Agg canvas (no pyplot, no display, no global
backend switch), so they can be written from any process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedhyper.results import RunResult, group


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def curve_band(runs: Sequence[RunResult]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rounds evaluated by any seed, and the mean, min and max accuracy over the seeds that evaluated each."""
    by_round: dict[int, list[float]] = {}
    for run in runs:
        for rnd, acc in run.curve:
            by_round.setdefault(rnd, []).append(acc)
    rounds = np.array(sorted(by_round))  # [R]
    values = [np.array(by_round[r]) for r in rounds]
    mean = np.array([v.mean() for v in values])
    low = np.array([v.min() for v in values])
    high = np.array([v.max() for v in values])
    return rounds, mean, low, high


def plot_accuracy(results: Sequence[RunResult], setting: str, path: Path) -> None:
    """Mean accuracy against rounds, one line per strategy, shaded between the seeds' min and max."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for (run_setting, strategy), runs in group(results).items():
        if run_setting != setting or not any(r.curve for r in runs):
            continue
        rounds, mean, low, high = curve_band(runs)
        (line,) = ax.plot(rounds, 100 * mean, label=f"{strategy} ({len(runs)} seeds)")
        ax.fill_between(rounds, 100 * low, 100 * high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set(
        xlabel="round", ylabel="mean personalised test accuracy (%)", title=f"{setting}: accuracy (min–max over seeds)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)


def plot_client_accuracy(results: Sequence[RunResult], setting: str, path: Path) -> None:
    """Box plot of the final per-client accuracies of each strategy, every seed's clients pooled."""
    pooled = {
        strategy: [100 * a for r in runs for a in r.per_client_accuracy]
        for (run_setting, strategy), runs in group(results).items()
        if run_setting == setting
    }
    pooled = {name: values for name, values in pooled.items() if values}
    fig = Figure(figsize=(max(5.0, 0.9 * len(pooled) + 2), 4.5))
    ax = fig.add_subplot()
    if pooled:
        ax.boxplot(list(pooled.values()), showmeans=True)
        ax.set_xticks(range(1, len(pooled) + 1), list(pooled), rotation=30, ha="right")
    ax.set(ylabel="client test accuracy (%)", title=f"{setting}: final accuracy per client (seeds pooled)")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def plot_setting(results: Sequence[RunResult], setting: str, out_dir: Path) -> list[str]:
    """Both plots of one data setting into ``out_dir``; returns their file names."""
    names = [f"accuracy_{setting}.png", f"client_accuracy_{setting}.png"]
    plot_accuracy(results, setting, Path(out_dir) / names[0])
    plot_client_accuracy(results, setting, Path(out_dir) / names[1])
    return names
