"""Evaluate a finished in-process run's last checkpoint again, and choose evaluation options at convergence.

A run's last checkpoint holds its server and its clients' kept state (private heads, Ditto's personal
models), so evaluating it under other evaluation settings (fine-tuning steps and rate, adaptation
steps) needs no training. ``evaluate`` does one such evaluation; ``cached_evaluate`` keeps each in
the run's ``reevaluation.jsonl`` (small, committed with the run), so a grid reports them again
without the checkpoint.

``settle`` is the grid's last stage (``simulations.compare ... settle=true``): for a strategy that
declares an ``eval_space`` (``fedhyper.search``), every candidate is evaluated on seed 0's final
checkpoint and the one with the best mean validation accuracy over clients is chosen (the test
split decides nothing); every seed's run is then evaluated with it. Options a strategy's tuning
trials chose after 25 rounds are thus chosen again on the trained models they act on, the same way
for every strategy.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fedhyper import checkpoint, record
from fedhyper.search import EvalSpace, as_overrides, candidates

log = logging.getLogger("fedhyper")

CACHE_FILE = "reevaluation.jsonl"
SETTLE_SEED = 0  # the seed whose run chooses, as tuning's trials use seed 0
KEPT = (record.ROUND, record.ACCURACY, record.ACCURACY_POOLED, record.VAL_ACCURACY, record.EVAL_CLIENTS)


def evaluate(run_dir: Path, overrides: list[str]) -> dict[str, float]:
    """One evaluation of every client of ``run_dir``'s last checkpoint with ``overrides`` applied; its
    round (the checkpoint's) under ``record.ROUND``."""
    from simulations.inprocess import InProcessGrid
    from strategies import app, experiment
    from strategies.loop import Checkpointer, RoundMetrics

    raw = experiment.recorded(run_dir / record.CONFIG_FILE)
    raw = OmegaConf.merge(raw, OmegaConf.from_dotlist(overrides))
    cfg = experiment.typed(raw)
    cfg.validate()
    with tempfile.TemporaryDirectory() as scratch:
        grid = InProcessGrid(cfg.data.num_clients)
        exp = experiment.Experiment(cfg, Path(scratch), fixed_num_clients=True)
        common, strategy = app.connect(grid, exp)
        loop = app.round_loop(cfg, strategy, grid, common)
        parts = {"strategy": strategy, app.CLIENTS_PART: grid}
        server_round = Checkpointer(run_dir / checkpoint.FILENAME, 0, 0, parts).restore()
        clients = loop.schedule.evaluated_clients(loop.schedule.total_rounds)
        return {record.ROUND: server_round, **loop.evaluate(server_round, clients, RoundMetrics())}


class NoCheckpoint(Exception):
    """A run without the final checkpoint an evaluation not yet cached needs."""


def cached_evaluate(run_dir: Path, values: dict[str, Any], rounds: int, compute: bool = True) -> dict[str, float]:
    """``evaluate`` with ``values`` (key -> value) on the checkpoint of round ``rounds``, kept in ``CACHE_FILE``.

    Raises NoCheckpoint when it is not cached and cannot be computed: ``compute`` is false, or the run
    has no checkpoint, or its checkpoint is not of round ``rounds`` (a run still going).
    """
    cache = run_dir / CACHE_FILE
    rows = [json.loads(line) for line in cache.read_text().splitlines()] if cache.is_file() else []
    for row in rows:
        if row["options"] == values and row["metrics"][record.ROUND] == rounds:
            return row["metrics"]
    if not compute or not (run_dir / checkpoint.FILENAME).is_file():
        raise NoCheckpoint(f"{run_dir.name}: {values} not evaluated, and no checkpoint to evaluate it on")
    metrics = evaluate(run_dir, as_overrides(values))
    if metrics[record.ROUND] != rounds:
        at = metrics[record.ROUND]
        raise NoCheckpoint(f"{run_dir.name}: its checkpoint is of round {at}, not the last ({rounds})")
    kept = {k: metrics[k] for k in KEPT if k in metrics}
    with cache.open("a") as fh:
        fh.write(json.dumps({"options": values, "metrics": kept}) + "\n")
    return kept


@dataclass
class Settled:
    """One cell's choice: the candidates' validation accuracy on seed 0, the chosen values, each seed's evaluation."""

    chosen: dict[str, Any] | None = None
    validation: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    by_seed: dict[int, dict[str, float]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # why a seed (or the choice) could not be evaluated


def settle(space: EvalSpace, runs: Sequence[tuple[int, Path]], rounds: int, compute: bool = True) -> Settled:
    """Choose ``space``'s values on seed ``SETTLE_SEED``'s run by validation accuracy; evaluate every run with them.

    ``runs``: (seed, run directory) of a cell's finished runs. Ties go to the earlier candidate.
    """
    out = Settled()
    by_seed = dict(runs)
    if SETTLE_SEED not in by_seed:
        out.missing.append(f"no finished seed-{SETTLE_SEED} run to choose on")
        return out
    try:
        for values in candidates(space):
            m = cached_evaluate(by_seed[SETTLE_SEED], values, rounds, compute)
            out.validation.append((values, m[record.VAL_ACCURACY]))
    except NoCheckpoint as err:
        out.missing.append(str(err))
        return out
    out.chosen = max(out.validation, key=lambda c: c[1])[0]  # max keeps the first of equals
    for seed, run_dir in sorted(by_seed.items()):
        try:
            out.by_seed[seed] = cached_evaluate(run_dir, out.chosen, rounds, compute)
        except NoCheckpoint as err:
            out.missing.append(f"seed {seed}: {err}")
    return out
