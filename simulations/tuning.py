"""Tuning before a grid: the same number of trials for every strategy, chosen on validation accuracy.

``python -m simulations.compare ... tune=N`` first runs N trials for every strategy × variant ×
setting of the grid: seed 0, ``tune_rounds`` rounds (a quarter of the grid's by default), the
test split never read (``sim.eval_test=false``). Each trial draws values from the strategy's
declared search space (``<Strategy>Config.search_space``, ``fedhyper.search``) with Optuna's
TPE sampler, seeded, so repeating the command draws the same trials and skips the ended ones
(finished, or diverged: ``record.IDLE_FILE``, a failed trial that would fail again). The values
of the trial with the best final validation accuracy (mean over clients) go to ``tuned.yaml``
and into every seed's run of the grid. Keys that the command line, a setting, a variant or
``strategy_overrides`` set are fixed by them and not tuned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

from fedhyper import results
from fedhyper.search import SearchSpace, as_overrides, suggest

TUNED_FILE = "tuned.yaml"
TUNE_SEED = 0
OBJECTIVE = "val_accuracy"  # summary.json's final mean-over-clients validation accuracy


@dataclass
class Study:
    """The trials of one strategy, variant and data setting."""

    setting: str
    strategy: str
    variant: str
    space: SearchSpace
    rounds: int  # each trial's budget
    optuna: optuna.Study
    trials: list[dict[str, Any]] = field(default_factory=list)  # values, val_accuracy, run_dir
    unfinished: bool = False  # a trial was not run (report_only): the study stopped there and chose nothing

    @property
    def label(self) -> str:
        return results.run_label(self.strategy, self.variant)

    def best(self) -> dict[str, Any] | None:
        scored = [t for t in self.trials if t[OBJECTIVE] is not None]
        return max(scored, key=lambda t: t[OBJECTIVE]) if scored else None


def new_study(setting: str, strategy: str, variant: str, space: SearchSpace, rounds: int) -> Study:
    optuna.logging.set_verbosity(logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=TUNE_SEED)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    return Study(setting, strategy, variant, space, rounds, study)


def trial_overrides(values: dict[str, Any], rounds: int) -> list[str]:
    """A trial's overrides after its grid cell's own: the drawn values and the tuning budget."""
    budget = [f"sim.num_rounds={rounds}", f"sim.eval_every={rounds}", "sim.eval_test=false", f"seed={TUNE_SEED}"]
    return [*as_overrides(values), *budget]


def objective(run_dir: Path) -> float | None:
    """The finished trial's validation accuracy, or None when it failed or wrote none."""
    if not results.is_finished(run_dir):
        return None
    value = json.loads((run_dir / results.SUMMARY_FILE).read_text()).get(OBJECTIVE)
    return None if value is None else float(value)


# (study, trial number, overrides after the cell's) -> the trial's run directory once it ran or was found
# done, or None for a trial left unrun (report_only)
RunTrials = Callable[[list[tuple[Study, int, list[str]]]], list[Path | None]]


def tune(studies: list[Study], n_trials: int, run_trials: RunTrials) -> None:
    """Run ``n_trials`` waves, one trial of every study each, recording each trial's values and score.

    Waves keep the studies in step, so the engine always has trials of several studies to run
    side by side, and a finished wave is replayed identically (the sampler is seeded and told the
    same scores in the same order) when the command is repeated. A study whose trial was left unrun
    is ``unfinished`` and drops out of later waves; each study has its own seeded sampler, so the
    others draw what they would have.
    """
    for number in range(n_trials):
        active = [s for s in studies if not s.unfinished]
        if not active:
            return
        asked = [(s, s.optuna.ask()) for s in active]
        drawn = [suggest(s.space, trial) for s, trial in asked]
        batch = [(s, number, trial_overrides(v, s.rounds)) for (s, _), v in zip(asked, drawn, strict=True)]
        run_dirs = run_trials(batch)
        for (study, trial), values, run_dir in zip(asked, drawn, run_dirs, strict=True):
            if run_dir is None:
                study.unfinished = True
                continue
            score = objective(run_dir)
            if score is None:
                study.optuna.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.optuna.tell(trial, score)
            study.trials.append({"values": values, OBJECTIVE: score, "run_dir": str(run_dir)})


def chosen_overrides(study: Study) -> list[str]:
    """The best trial's values as overrides; none when every trial failed (the defaults stay)."""
    best = study.best()
    return as_overrides(best["values"]) if best else []


def write_tuned(studies: list[Study], n_trials: int, path: Path) -> dict[str, Any]:
    """``tuned.yaml``: how the grid was tuned and, per setting and strategy, what was chosen.

    Cells that an earlier command tuned into the same file and this one did not (a grid run again
    with fewer strategies) keep their entries; this command's cells replace theirs.
    """
    earlier = yaml.safe_load(path.read_text()) if path.is_file() else None
    chosen: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (earlier or {}).get("chosen", {}).items()}
    for s in studies:
        best = s.best()
        chosen.setdefault(s.setting, {})[s.label] = {
            "values": best["values"] if best else {},
            OBJECTIVE: best[OBJECTIVE] if best else None,
            "trials": len(s.trials),
            "rounds_per_trial": s.rounds,
            "failed_trials": sum(t[OBJECTIVE] is None for t in s.trials),
            "searched": {key: repr(dist) for key, dist in s.space.items()},
        }
    counts = sorted({cell["trials"] for cells in chosen.values() for cell in cells.values()} or {n_trials})
    record = {
        "method": "Optuna TPE sampler (its first 10 trials are seeded random draws)",
        # Over every cell the file holds, this command's and an earlier one's: one number when they agree.
        "trials_per_cell": counts[0] if len(counts) == 1 else counts,
        "seed": TUNE_SEED,
        "selected_on": "final validation accuracy, mean over clients (the test split is not read)",
        "chosen": chosen,
    }
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    return record


def markdown(record: dict[str, Any], cells: Collection[tuple[str, str]] | None = None) -> str:
    """The report's section on tuning: how, and the values chosen for each strategy.

    ``cells``: the (setting, label) pairs to list; None lists every cell the record holds.
    """
    lines = [
        "",
        "## Tuning",
        "",
        f"{_trials_sentence(record['trials_per_cell'])} ({record['method']}), seed "
        f"{record['seed']}, a shorter budget (rounds per trial below), selected on {record['selected_on']}. "
        "The chosen values apply to every seed of the grid; `tuned.yaml` lists the search spaces.",
    ]
    for setting, chosen in record["chosen"].items():
        listed = {label: cell for label, cell in chosen.items() if cells is None or (setting, label) in cells}
        if not listed:
            continue
        head = "| strategy | chosen | validation (%) | trials | rounds per trial |"
        lines += ["", f"Setting `{setting}`:", "", head, "|---|---|---|---|---|"]
        for label, cell in listed.items():
            values = ", ".join(f"`{k}={_short(v)}`" for k, v in cell["values"].items()) or "defaults (no trial ran)"
            score = "–" if cell[OBJECTIVE] is None else f"{100 * cell[OBJECTIVE]:.2f}"
            failed = f" ({cell['failed_trials']} failed)" if cell["failed_trials"] else ""
            lines.append(f"| {label} | {values} | {score} | {cell['trials']}{failed} | {cell['rounds_per_trial']} |")
    return "\n".join(lines) + "\n"


def _trials_sentence(trials: int | list[int]) -> str:
    if isinstance(trials, int):
        return f"Every strategy had {trials} trials per setting"
    return f"Strategies had {' or '.join(map(str, trials))} trials per setting (each cell's below)"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
