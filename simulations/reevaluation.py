"""Evaluate a finished in-process run's last checkpoint again, and choose evaluation options at convergence.

A run's last checkpoint holds its server and its clients' kept state (private heads, Ditto's personal
models), so evaluating it under other evaluation settings (fine-tuning steps and rate, adaptation
steps) needs no training. ``evaluate`` does one such evaluation; ``evaluate_all`` keeps each in
the run's ``reevaluation.jsonl`` (small, committed with the run), so a grid reports them again
without the checkpoint.

``settle`` is the grid's last stage (``simulations.compare ... settle=true``): for a strategy that
declares an ``eval_space`` (``fedhyper.search``), every candidate is evaluated on seed 0's final
checkpoint and the one with the best mean validation accuracy over clients is chosen (the test
split decides nothing), then likewise for its ``eval_then`` with that choice fixed; every seed's run is
then evaluated with the choice. Options a strategy's tuning
trials chose after 25 rounds are thus chosen again on the trained models they act on, the same way
for every strategy.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedhyper import checkpoint, record, results
from fedhyper.search import EvalSpace, as_overrides, candidates

CACHE_FILE = "reevaluation.jsonl"
SETTLE_SEED = 0  # the seed whose run chooses, as tuning's trials use seed 0
KEPT = (record.ROUND, record.ACCURACY, record.ACCURACY_POOLED, record.VAL_ACCURACY, record.EVAL_CLIENTS)


def _config(run_dir: Path, overrides: list[str]) -> Any:
    """``run_dir``'s recorded experiment config with ``overrides`` applied, validated."""
    from strategies import experiment

    raw = experiment.recorded(run_dir / record.CONFIG_FILE)
    cfg = experiment.typed(OmegaConf.merge(raw, OmegaConf.from_dotlist(overrides)))
    cfg.validate()
    return cfg


def evaluate(run_dir: Path, overrides: list[str]) -> dict[str, float]:
    """One evaluation of every client of ``run_dir``'s last checkpoint with ``overrides`` applied; its
    round (the checkpoint's) under ``record.ROUND``."""
    from simulations.inprocess import InProcessGrid
    from strategies import app, experiment
    from strategies.loop import Checkpointer, RoundMetrics

    cfg = _config(run_dir, overrides)
    with tempfile.TemporaryDirectory() as scratch:
        grid = InProcessGrid(cfg.data.num_clients)
        exp = experiment.Experiment(cfg, Path(scratch), fixed_num_clients=True)
        common, strategy = app.connect(grid, exp)
        loop = app.round_loop(cfg, strategy, grid, common)
        parts = {"strategy": strategy, app.CLIENTS_PART: grid}
        server_round = Checkpointer(run_dir / checkpoint.FILENAME, 0, 0, parts).restore()
        clients = loop.schedule.evaluated_clients(loop.schedule.total_rounds)
        return {record.ROUND: server_round, **loop.evaluate(server_round, clients, RoundMetrics())}


class NotEvaluated(Exception):
    """An evaluation not kept that cannot be made: no checkpoint, one of another round than the run's last,
    one without the clients' kept state (a Flower run's), or one that failed."""


class NoFinalCheckpoint(NotEvaluated):
    """An evaluation not kept whose run has no final checkpoint to make it on (none kept, as on a machine
    that has the run's committed files only, or one of an earlier round): running the run again gives one."""

    def __init__(self, message: str, run_dir: Path) -> None:
        super().__init__(message)
        self.run_dir = run_dir


def final_round(run_dir: Path) -> int:
    """The last round a finished run recorded (its training rounds and, where a strategy adapts to them, the
    novel clients'); its final checkpoint is of that round."""
    return int(json.loads((run_dir / record.SUMMARY_FILE).read_text())["rounds"])


def _kept_rows(run_dir: Path) -> list[dict[str, Any]]:
    cache = run_dir / CACHE_FILE
    return [json.loads(line) for line in cache.read_text().splitlines()] if cache.is_file() else []


def _kept(rows: list[dict[str, Any]], values: dict[str, Any], rounds: int) -> dict[str, float] | None:
    return next((r["metrics"] for r in rows if r["options"] == values and r["metrics"][record.ROUND] == rounds), None)


def _evaluate_values(run_dir: str, values: dict[str, Any]) -> dict[str, float] | NotEvaluated:
    """``evaluate`` with key -> value options (a worker process's task); a failure comes back as NotEvaluated,
    so that one bad checkpoint costs its own evaluations only, not the others' or the grid's report."""
    try:
        return evaluate(Path(run_dir), as_overrides(values))
    except Exception as err:  # noqa: BLE001  (any failure of one evaluation is that evaluation's result)
        return NotEvaluated(f"{Path(run_dir).name}: {values} could not be evaluated: {err}")


def evaluate_all(
    tasks: Sequence[tuple[Path, dict[str, Any]]], compute: bool = True, pool: Executor | None = None
) -> list[dict[str, float] | NotEvaluated]:
    """Each (finished run's directory, options) evaluated on the run's final checkpoint, or its NotEvaluated.

    An evaluation kept in the run's ``CACHE_FILE`` is read, not repeated, also for other options that act
    alike (the same ``evaluated_with()``). So is the run's own last evaluation for options that evaluate it as
    it evaluated itself: evaluating its final checkpoint with them gives the same figures
    (tests/test_reevaluate.py). The others run in ``pool``
    (the grid's workers, ``simulations.inprocess.worker_pool``), or here without one, and are kept.
    Without ``compute``, or without a checkpoint, or with one of another round than the run's last
    (``final_round``), or for a run whose recorded config the current code refuses, an evaluation not kept is
    a NotEvaluated.
    """
    runs = {d for d, _ in tasks}
    rows_of, last = {d: _kept_rows(d) for d in runs}, {d: final_round(d) for d in runs}
    out: list[dict[str, float] | NotEvaluated | None] = [_kept(rows_of[d], v, last[d]) for d, v in tasks]
    why_refused = {d: refused(d) for d in {d for (d, _), r in zip(tasks, out, strict=True) if r is None}}
    for i, (run_dir, _) in enumerate(tasks):
        if out[i] is None and (why := why_refused[run_dir]):
            out[i] = NotEvaluated(why)
    # What an evaluation is known for, per run: the kept ones and the run's own last one (as options {}), each
    # by how its options act (``_acting``). Options acting alike as one of them are that evaluation.
    known: dict[Path, dict[str, dict[str, float]]] = {}
    for i, (run_dir, values) in enumerate(tasks):
        if out[i] is not None:
            continue
        if run_dir not in known:
            rows = [
                (r["options"], r["metrics"]) for r in rows_of[run_dir] if r["metrics"][record.ROUND] == last[run_dir]
            ]
            if (recorded := _recorded(run_dir, last[run_dir])) is not None:
                rows.append(({}, recorded))
            known[run_dir] = {}
            for options, metrics in rows:
                if (acting := _acting(run_dir, options)) is not None:
                    known[run_dir].setdefault(acting, metrics)
        if (acting := _acting(run_dir, values)) is not None and acting in known[run_dir]:
            out[i] = known[run_dir][acting]
    for i, (run_dir, values) in enumerate(tasks):
        if out[i] is None and not compute:
            out[i] = NotEvaluated(f"{run_dir.name}: {values} not evaluated (only kept evaluations are read)")
        elif out[i] is None and not (run_dir / checkpoint.FILENAME).is_file():
            why = f"{run_dir.name}: {values} not evaluated, and no checkpoint to evaluate it on"
            out[i] = NoFinalCheckpoint(why, run_dir)
    todo = [i for i, r in enumerate(out) if r is None]
    evaluate_in = pool.map if pool is not None and len(todo) > 1 else map
    computed = list(evaluate_in(_evaluate_values, [str(tasks[i][0]) for i in todo], [tasks[i][1] for i in todo]))
    for i, metrics in zip(todo, computed, strict=True):
        run_dir, values = tasks[i]
        if isinstance(metrics, NotEvaluated):
            out[i] = metrics
            continue
        if metrics[record.ROUND] != last[run_dir]:
            at = metrics[record.ROUND]
            why = f"{run_dir.name}: its checkpoint is of round {at}, not its last ({last[run_dir]})"
            out[i] = NoFinalCheckpoint(why, run_dir)
            continue
        out[i] = {k: metrics[k] for k in KEPT if k in metrics}
        with (run_dir / CACHE_FILE).open("a") as fh:
            fh.write(json.dumps({"options": values, "metrics": out[i]}) + "\n")
    return out  # type: ignore[return-value]


def refused(run_dir: Path) -> str | None:
    """Why the current code refuses ``run_dir``'s recorded config (an option since removed or forbidden), or None."""
    try:
        _config(run_dir, [])
    except (ValueError, OmegaConfBaseException) as err:
        return f"{run_dir.name}: its recorded config is refused now: {err}"
    return None


def _acting(run_dir: Path, values: dict[str, Any]) -> str | None:
    """What ``values`` change of how ``run_dir``'s run evaluates: its strategy config's ``evaluated_with()``
    with them applied (``fedhyper.search``), as a key; None for a strategy's config without it, or for options
    the config refuses (their evaluation fails and says why)."""
    try:
        strategy = _config(run_dir, as_overrides(values)).strategy
    except (ValueError, OmegaConfBaseException):
        return None
    if not hasattr(strategy, "evaluated_with"):
        return None
    return json.dumps(strategy.evaluated_with(), sort_keys=True, default=str)


def distinct(options: Sequence[dict[str, Any]], run_dir: Path) -> list[dict[str, Any]]:
    """The first of each group of ``options`` that evaluate ``run_dir``'s run alike, in order.

    Alike: equal ``evaluated_with()`` of the strategy's config with the options applied (``fedhyper.search``),
    a fine-tuning rate beside 0 steps for one; a strategy's config without it has every option its own group.
    """
    groups: dict[str, dict[str, Any]] = {}
    for values in options:
        groups.setdefault(_acting(run_dir, values) or json.dumps(values, sort_keys=True, default=str), values)
    return list(groups.values())


def _recorded(run_dir: Path, last_round: int) -> dict[str, float] | None:
    """The run's own last evaluation, if it was made at its last round."""
    row = results.last_evaluation(results.read_metrics(run_dir))
    return {k: row[k] for k in KEPT if k in row} if row.get(record.ROUND) == last_round else None


@dataclass
class Settled:
    """One cell's choice: the candidates' validation accuracy on seed 0, the chosen values, each seed's evaluation."""

    chosen: dict[str, Any] | None = None
    validation: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    by_seed: dict[int, dict[str, float]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # why a seed (or the choice) could not be evaluated
    rerun: list[Path] = field(default_factory=list)  # runs whose missing evaluations need their final checkpoint


def settle(
    stages: EvalSpace | Sequence[EvalSpace],
    runs: Sequence[tuple[int, Path]],
    compute: bool = True,
    pool: Executor | None = None,
) -> Settled:
    """Choose the spaces' values on seed ``SETTLE_SEED``'s run by validation accuracy; evaluate every run with them.

    ``stages``: one evaluation space, or several chosen in turn, each with the earlier choices fixed
    (``fedhyper.search.eval_stages``). ``runs``: (seed, run directory) of a cell's finished runs; ``pool``:
    where evaluations run (``evaluate_all``). Candidates that evaluate alike (``distinct``) are evaluated once,
    as the first of them; ties go to the earlier candidate.
    """
    out = Settled()
    by_seed = dict(runs)
    if SETTLE_SEED not in by_seed:
        out.missing.append(f"no finished seed-{SETTLE_SEED} run to choose on")
        return out
    chosen: dict[str, Any] = {}
    for space in [stages] if isinstance(stages, Mapping) else stages:
        options = distinct([{**chosen, **c} for c in candidates(space)], by_seed[SETTLE_SEED])
        evaluated = evaluate_all([(by_seed[SETTLE_SEED], v) for v in options], compute, pool)
        if failed := next((e for e in evaluated if isinstance(e, NotEvaluated)), None):
            out.missing.append(str(failed))
            if isinstance(failed, NoFinalCheckpoint):
                out.rerun.append(failed.run_dir)
            return out
        validation = [(v, m[record.VAL_ACCURACY]) for v, m in zip(options, evaluated, strict=True)]  # type: ignore[index]
        out.validation += validation
        chosen = max(validation, key=lambda c: c[1])[0]  # max keeps the first of equals
    out.chosen = chosen
    seeds = sorted(by_seed)
    results = evaluate_all([(by_seed[s], out.chosen) for s in seeds], compute, pool)
    for seed, result in zip(seeds, results, strict=True):
        if isinstance(result, NotEvaluated):
            out.missing.append(f"seed {seed}: {result}")
            if isinstance(result, NoFinalCheckpoint):
                out.rerun.append(result.run_dir)
        else:
            out.by_seed[seed] = result
    return out
