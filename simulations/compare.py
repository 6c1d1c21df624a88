"""Compare strategies: ``python -m simulations.compare strategies=[...] variants=[...] settings=[...] seeds=[...]``.

Runs every strategy × variant (a named configuration of it) × data setting × seed on the same
partitions (a setting and a seed fix them) and the same evaluation (mean personalised test
accuracy over clients), then writes ``results.csv``, ``report.md`` and plots into ``out_dir``, or
its ``report_dir`` (``fedhyper.results``, ``simulations.report``, ``simulations.plots``). The engines
(``simulations.engines``) run each run in a worker process or through ``python -m simulations.run``.
Each run has its own directory under ``out_dir/runs``, named by its resolved config and engine,
so repeating a command skips the runs that finished, re-runs those that were interrupted (from their checkpoint when
``sim.checkpoint_every`` wrote one) and never mixes runs of different configs. Every config is
composed and checked before the first run starts: a bad option exits with status 2 and one line,
as ``simulations.run`` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from fedhyper import checkpoint, record, results, search, tracking
from fedhyper.config import ExperimentConfig
from simulations import inprocess, plots, reevaluation, tuning
from simulations.config import ENGINES, CompareConfig, register_configs
from simulations.engines import FlowerEngine, InProcessEngine
from simulations.progress import GridProgress, RunLabel, written_since
from simulations.report import cell_name, markdown_report, settled_report
from simulations.run import check_machine, precheck
from strategies import experiment, registry

register_configs()
COMPARE_KEYS = {f.name for f in fields(CompareConfig)} - {f.name for f in fields(ExperimentConfig)}
# Experiment keys a grid sets per run, and what to use instead.
PER_RUN_KEYS = {
    "strategy": "strategies=[...]",
    "seed": "seeds=[...]",
    "resume": "nothing: repeating the command goes on with the grid",
}


@dataclass
class PlannedRun:
    label: RunLabel
    overrides: list[str]  # what simulations.run is given for it (engine=flower)
    config: dict[str, Any]  # the resolved experiment config


def experiment_overrides(argv: list[str]) -> list[str]:
    """The command line's overrides of the experiment itself, which every run of the grid gets."""
    for arg in argv:
        if "=" not in arg or arg.startswith("-"):
            raise ValueError(f"{arg!r}: simulations.compare takes key=value overrides only")
    parsed = OverridesParser.create().parse_overrides(argv)
    kept = []
    for arg, o in zip(argv, parsed, strict=True):
        top = o.key_or_group.split(".")[0]
        if top == "hydra":
            raise ValueError(f"{arg}: simulations.compare takes no hydra options; out_dir= sets where outputs go")
        if o.key_or_group in PER_RUN_KEYS:
            raise ValueError(f"{arg}: a comparison sets {o.key_or_group} per run; use {PER_RUN_KEYS[o.key_or_group]}")
        if top not in COMPARE_KEYS:
            kept.append(arg)
    return kept


def validate(cc: CompareConfig) -> None:
    for name in [*cc.strategies, *cc.strategy_overrides]:
        registry.get(name)  # an unknown name fails with the list of known ones
    lists = (("strategies", cc.strategies), ("seeds", cc.seeds), ("settings", cc.settings), ("variants", cc.variants))
    for key, values in lists:
        if not values or len(set(values)) != len(values):
            raise ValueError(f"{key}={list(values)} must be a non-empty list without repeats")
    for key, names, defined in (
        ("settings", cc.settings, cc.setting_overrides),
        ("variants", cc.variants, cc.variant_overrides),
    ):
        for name in names:
            if name not in defined:
                raise ValueError(
                    f"{key}: {name!r} is not defined; choose among {', '.join(defined)} "
                    f"or define it with '+{key[:-1]}_overrides.{name}=[...]'"
                )
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"{key}: {name!r} names files; use letters, digits, '-' and '_'")
    if cc.engine not in ENGINES:
        raise ValueError(f"engine={cc.engine!r} is unknown; choose one of {', '.join(ENGINES)}")
    if cc.jobs < 0 or (cc.engine == "flower" and cc.jobs > 1):
        raise ValueError(f"jobs={cc.jobs} must be >= 0 (0: one per core), and 1 with engine=flower")
    if not 0 < cc.target_accuracy <= 1:
        raise ValueError(f"target_accuracy={cc.target_accuracy} must be in (0, 1] (a fraction, like 0.9)")
    if cc.progress_every <= 0:
        raise ValueError(f"progress_every={cc.progress_every} must be positive (seconds)")
    if cc.settle and cc.engine == "flower":
        raise ValueError("settle=true evaluates in-process checkpoints, which hold the clients' kept state (a Flower "
                         "run's do not): use engine=inprocess")  # fmt: skip
    if cc.tune < 0 or cc.tune_rounds < 0:
        raise ValueError(f"tune={cc.tune} and tune_rounds={cc.tune_rounds} must be >= 0 (0: no tuning; a quarter)")
    labels = [results.run_label(n, v) for n in cc.strategies for v in cc.variants]
    if cc.reference and cc.reference not in labels:
        raise ValueError(f"reference={cc.reference!r} is none of this grid's labels: {', '.join(labels)}")
    parts = PurePosixPath(cc.report_dir).parts
    if PurePosixPath(cc.report_dir).is_absolute() or ".." in parts or parts[:1] in (("runs",), ("tuning",)):
        raise ValueError(
            f'report_dir={cc.report_dir!r} must be a folder inside out_dir, not runs/ or tuning/ ("": out_dir itself)'
        )


def report_folder(cc: CompareConfig) -> Path:
    """Where the grid's results.csv, report.md, settled.yaml and plots go (``report_dir`` under ``out_dir``)."""
    return Path(cc.out_dir) / cc.report_dir


def load_compare(argv: list[str]) -> tuple[CompareConfig, list[str]]:
    """The grid's config and the experiment overrides every run gets; ValueError names a bad option."""
    common = experiment_overrides(argv)
    # strategy.* keys are checked per run, against each strategy's own config (its default here is pfedhn's).
    own = [a for a in argv if a not in common or not a.lstrip("+~").startswith("strategy.")]
    cc: CompareConfig = OmegaConf.to_object(precheck(own, config_name="compare"))  # type: ignore[assignment]
    validate(cc)
    return cc, common


def config_digest(config: dict[str, Any], engine: str) -> str:
    """Names a run by what decides its results: tracking it or checkpointing it or not is the same run.

    ``sim.checkpoint_every`` is hashed as 0 (never), so a grid can start checkpointing its runs
    without renaming those that finished before (in-process, a resumed run ends as an uninterrupted
    one, its clients' kept state included; ``docs/strategies.md`` says what a Flower run resumes).
    ``sim.max_idle_rounds`` is left out: it only stops a run that cannot train, never changes one
    that finishes, and runs named before it existed keep their names.
    """
    config = {k: v for k, v in config.items() if k != "tracking"}
    if isinstance(config.get("sim"), dict):
        sim = {k: v for k, v in config["sim"].items() if k != "max_idle_rounds"}
        config["sim"] = {**sim, "checkpoint_every": 0}
    return hashlib.sha256(json.dumps({"config": config, "engine": engine}, sort_keys=True).encode()).hexdigest()[:10]


def override_keys(overrides: list[str]) -> set[str]:
    return {o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)}


def compose_run(
    cc: CompareConfig, common: list[str], setting: str, name: str, variant: str, tuned: tuple[str, ...] = ()
) -> tuple[list[str], ExperimentConfig]:
    """One run's overrides, in the order documented by ``CompareConfig`` (then ``tuned``), and its checked config."""
    later = [*common, *cc.strategy_overrides.get(name, []), *tuned]
    overrides = [*cc.setting_overrides[setting], *cc.variant_overrides[variant], *later, f"strategy={name}"]
    overrides += tracking.grid_overrides(cc.tracking, cc.out_dir, setting, variant)
    where = f"strategy {results.run_label(name, variant)}, setting {setting}"
    try:
        cfg = experiment.typed(precheck(overrides))
        cfg.validate()
        if not cfg.sim.eval_test:
            raise ValueError("sim.eval_test=false: a grid reports its runs' test accuracy (tuning trials leave "
                             "the test split out on their own)")  # fmt: skip
        if (cc.tune or cc.settle) and not cfg.data.val_fraction > 0:
            raise ValueError(f"data.val_fraction={cfg.data.val_fraction}: tune=N and settle=true choose on "
                             "validation accuracy, which needs the clients' validation split")  # fmt: skip
    except ValueError as err:
        hint = f"; options of one strategy go in strategy_overrides.{name}" if str(err).startswith("strategy") else ""
        raise ValueError(f"{err} ({where}{hint})") from err
    if clash := sorted(override_keys(cc.variant_overrides[variant]) & override_keys(later)):
        raise ValueError(
            f"{', '.join(clash)}: set by variant {variant} and again by the command line or "
            f"strategy_overrides.{name}, which would undo the variant; set it in one place ({where})"
        )
    return overrides, cfg


def run_dir_of(cc: CompareConfig, setting: str, name: str, variant: str, seed: int, config: dict[str, Any]) -> Path:
    """``runs/<setting>/<strategy>[/<variant>]/seed<seed>-<digest>``; the base variant has no level of its own.

    Variants get their own directories even when their configs are equal (``base`` and
    ``embedding-per_tensor`` are, by default), so two runs of a grid never share one.
    """
    parent = Path(cc.out_dir) / "runs" / setting / name
    if variant != results.BASE_VARIANT:
        parent /= variant
    return parent / f"seed{seed}-{config_digest(config, cc.engine)}"


Cell = tuple[str, str, str]  # (setting, strategy, variant)
SETTLED_FILE = "settled.yaml"  # settle=true's choices


def finished_twin(run_dir: Path, config: dict[str, Any]) -> Path:
    """``run_dir``, or a finished run beside it whose recorded config is ``config`` under today's schema.

    A run directory is named by a digest of its resolved config, which changes whenever the config
    gains an option, even one at its default. A run recorded before such a change is the same run
    if its ``config.yaml``, read with today's defaults for what it lacks (``experiment.recorded``:
    except options whose default differs from what runs did before them), resolves to ``config``;
    it is reused rather than run again. Configs that no longer parse never match. The engine that ran
    it does not matter (the two give the same run, ``docs/strategies.md``); the run records which did
    (``record.engine_of``), and results.csv reports that one.
    """
    if run_dir.exists():
        return run_dir
    stem = run_dir.name.rsplit("-", 1)[0]
    for other in sorted(run_dir.parent.glob(f"{stem}-*")):
        if not results.is_finished(other):
            continue
        try:
            typed = experiment.typed(experiment.recorded(other / record.CONFIG_FILE))
            recorded = OmegaConf.to_container(OmegaConf.structured(typed))
        except Exception:  # an option since removed or renamed: not the same run
            continue
        if config_digest(recorded, "") == config_digest(config, ""):  # type: ignore[arg-type]
            return other
    return run_dir


def plan(cc: CompareConfig, common: list[str], tuned: dict[Cell, list[str]] | None = None) -> list[PlannedRun]:
    """Compose and check every run's config; seeds outermost, so a first full comparison comes early.

    ``tuned`` holds each cell's chosen values (overrides) when the grid was tuned first; a cell it lacks
    (its tuning not ended, ``report_only``) is left out.
    """
    combos: list[tuple[str, str, str, list[str], ExperimentConfig]] = []
    for setting in cc.settings:
        for name in cc.strategies:
            for variant in cc.variants:
                if tuned is not None and (setting, name, variant) not in tuned:
                    continue
                chosen = tuple(tuned[(setting, name, variant)]) if tuned is not None else ()
                combos.append((setting, name, variant, *compose_run(cc, common, setting, name, variant, chosen)))
        if combos and combos[-1][0] == setting:  # once per setting planned: its data and device
            check_machine(combos[-1][4])
    total, runs = len(cc.seeds) * len(combos), []
    for seed in cc.seeds:
        for setting, name, variant, overrides, cfg in combos:
            config = OmegaConf.to_container(OmegaConf.structured(replace(cfg, seed=seed)))
            run_dir = finished_twin(run_dir_of(cc, setting, name, variant, seed, config), config)  # type: ignore[arg-type]
            label = RunLabel(len(runs) + 1, total, name, setting, seed, cfg.sim.num_rounds, run_dir.resolve(), variant)
            runs.append(PlannedRun(label, [*overrides, f"seed={seed}"], config))  # type: ignore[arg-type]
    return runs


class TuningUnfinished(Exception):
    """``report_only`` on a tuned grid where no cell's trials have all finished."""


def fixed_keys(cc: CompareConfig, common: list[str], cell: Cell) -> set[str]:
    """What a cell's setting, variant, command line and ``strategy_overrides`` set: tuning and settling leave it."""
    setting, name, variant = cell
    return override_keys([*cc.setting_overrides[setting], *cc.variant_overrides[variant], *common,
                          *cc.strategy_overrides.get(name, [])])  # fmt: skip


def tune_grid(
    cc: CompareConfig, common: list[str], workers: inprocess.Workers
) -> tuple[dict[Cell, list[str]], list[Cell]]:
    """``tune=N``: N trials per cell on validation accuracy (``simulations.tuning``).

    Returns each tuned cell's chosen overrides, and the cells whose tuning has not ended: with
    ``report_only`` no trial runs, so a cell with a trial still to run is left out of the grid (its
    runs would need the values it has not chosen yet); when that is every cell, ``TuningUnfinished``.
    """
    studies = []
    for setting in cc.settings:
        for name in cc.strategies:
            for variant in cc.variants:
                _, cfg = compose_run(cc, common, setting, name, variant)
                fixed = fixed_keys(cc, common, (setting, name, variant))
                space = {k: d for k, d in type(cfg.strategy).search_space.items() if k not in fixed}
                rounds = cc.tune_rounds or max(1, cfg.sim.num_rounds // 4)
                studies.append(tuning.new_study(setting, name, variant, space, rounds))

    def run_trials(batch: list[tuple[tuning.Study, int, list[str]]]) -> list[Path | None]:
        planned = []
        for study, number, extra in batch:
            base, _ = compose_run(cc, common, study.setting, study.strategy, study.variant)
            cfg = experiment.typed(precheck([*base, *extra]))
            cfg.validate()
            config = OmegaConf.to_container(OmegaConf.structured(cfg))
            run_dir = Path(cc.out_dir) / "tuning" / study.setting / study.label
            run_dir = finished_twin(run_dir / f"trial{number}-{config_digest(config, cc.engine)}", config)  # type: ignore
            label = RunLabel(number + 1, cc.tune, study.strategy, study.setting, tuning.TUNE_SEED, study.rounds,
                             run_dir.resolve(), study.variant)  # fmt: skip
            planned.append(PlannedRun(label, [*base, *extra], config))  # type: ignore[arg-type]
        pending = [r for r in planned if not results.has_ended(r.label.run_dir)]  # a diverged one would again
        print(f"tuning, trial {batch[0][1] + 1}/{cc.tune} of {len(batch)} cells: {len(pending)} to run", flush=True)
        if pending and cc.report_only:
            return [None if r in pending else r.label.run_dir for r in planned]
        if pending:
            execute(cc, pending, workers)
        return [r.label.run_dir for r in planned]

    tuning.tune(studies, cc.tune, run_trials)
    tuned = [s for s in studies if not s.unfinished]
    unfinished = [(s.setting, s.strategy, s.variant) for s in studies if s.unfinished]
    if not tuned:
        raise TuningUnfinished(
            f"report_only: the tuning has not ended in any of the {len(studies)} cells (each has trials "
            "to run); nothing to report yet"
        )
    tuning.write_tuned(tuned, cc.tune, Path(cc.out_dir) / tuning.TUNED_FILE)
    return {(s.setting, s.strategy, s.variant): tuning.chosen_overrides(s) for s in tuned}, unfinished


def settle_grid(
    cc: CompareConfig, common: list[str], runs: list[PlannedRun], workers: inprocess.Workers
) -> dict[Cell, reevaluation.Settled]:
    """``settle=true``: each cell's evaluation-only options chosen on seed 0's final checkpoint, every seed evaluated.

    Keys that the setting, the variant, the command line or ``strategy_overrides`` set stay as set (a
    variant that removes the fine-tuning keeps it removed). With ``report_only`` nothing is evaluated:
    only evaluations already kept in the runs' ``reevaluation.jsonl`` are read.
    """
    cells: dict[Cell, list[PlannedRun]] = {}
    for run in runs:
        cells.setdefault((run.label.setting, run.label.strategy, run.label.variant), []).append(run)
    out: dict[Cell, reevaluation.Settled] = {}
    pool = workers.executor if workers.size > 1 else None  # else evaluated here, one at a time
    for (setting, name, variant), members in cells.items():
        fixed = fixed_keys(cc, common, (setting, name, variant))
        stages = [{k: v for k, v in stage.items() if k not in fixed}
                  for stage in search.eval_stages(registry.get(name).config_cls)]  # fmt: skip
        if not (stages := [s for s in stages if s]):
            continue
        finished = [(r.label.seed, r.label.run_dir) for r in members if results.is_finished(r.label.run_dir)]
        counts = " then ".join(str(len(search.candidates(s))) for s in stages)
        print(f"settling {cell_name((setting, name, variant))}: {counts} candidates "
              f"(those acting alike once) on seed {reevaluation.SETTLE_SEED}, then {len(finished)} runs",
              flush=True)  # fmt: skip
        out[(setting, name, variant)] = reevaluation.settle(stages, finished, not cc.report_only, pool)
    (report_folder(cc) / SETTLED_FILE).write_text(yaml.safe_dump(settled_yaml(out), sort_keys=False))
    return out


SETTLE_RERUNS = 2  # seed 0's runs first; the values chosen on them may then need the other seeds' checkpoints


def settle_rerunning(
    cc: CompareConfig, common: list[str], runs: list[PlannedRun], workers: inprocess.Workers
) -> tuple[dict[Cell, reevaluation.Settled], int]:
    """``settle_grid``, running again the finished runs whose missing evaluations need their final checkpoint.

    A checkpoint is not committed (tens of MB): on a machine that has a grid's committed files only, its
    finished runs have none, and an evaluation not kept in their ``reevaluation.jsonl`` cannot be made.
    Such a run (one that checkpoints: ``sim.checkpoint_every``) is run again, from its start or from an earlier
    round's checkpoint it has, its record replaced (an in-process run repeats itself on the same machine, resumed
    or not: tests/simulations/test_compare.py, tests/strategies/test_resume.py), and
    the grid settled again: seed 0's runs first, then the other seeds the values chosen on them need.
    Returns the settled cells and how many of the runs run again failed.
    """
    failed = 0
    by_dir = {r.label.run_dir: r for r in runs}
    for _ in range(SETTLE_RERUNS):
        settled = settle_grid(cc, common, runs, workers)
        wanted = dict.fromkeys(d for s in settled.values() for d in s.rerun if d in by_dir)
        again = [by_dir[d] for d in wanted if by_dir[d].config["sim"]["checkpoint_every"] > 0]
        if cc.report_only or not again:
            return settled, failed
        print(f"settling needs the final checkpoints of {len(again)} finished runs, which have none here (a "
              "checkpoint is not committed): running them again, then settling again",
              flush=True)  # fmt: skip
        for run in again:
            for name in (record.SUMMARY_FILE, reevaluation.CACHE_FILE):  # kept evaluations were of the old run's
                (run.label.run_dir / name).unlink(missing_ok=True)
        failed += execute(cc, again, workers)
    return settle_grid(cc, common, runs, workers), failed


def settled_yaml(settled: dict[Cell, reevaluation.Settled]) -> dict[str, Any]:
    """settled.yaml: per setting and cell, the chosen values, each candidate's seed-0 validation, what is missing."""
    out: dict[str, Any] = {}
    for (setting, name, variant), s in settled.items():
        out.setdefault(setting, {})[results.run_label(name, variant)] = {
            "chosen": dict(s.chosen) if s.chosen else None,  # a copy: YAML would alias it with its candidate
            "seeds_evaluated": sorted(s.by_seed),
            "candidates": [{"values": v, "val_accuracy": round(acc, 6)} for v, acc in s.validation],
            **({"missing": s.missing} if s.missing else {}),
        }
    return out


def start_engine(cc: CompareConfig, workers: inprocess.Workers) -> InProcessEngine | FlowerEngine:
    """The engine: one flower run at a time (each has all cores), or ``jobs`` in-process runs in ``workers``."""
    if cc.engine == "flower":
        return FlowerEngine()
    return InProcessEngine(workers)


def execute(cc: CompareConfig, pending: list[PlannedRun], workers: inprocess.Workers) -> int:
    """Run the pending runs, reporting progress; returns how many failed. Ctrl-C stops every run."""
    tracking.prepare_grid(cc.tracking, cc.out_dir)  # one MLflow store and experiment before runs write side by side
    engine = start_engine(cc, workers)
    # before any run writes its log
    progress = GridProgress(pending=len(pending), parallel=max(1, min(engine.parallel, len(pending))))
    futures = {}
    for run in pending:
        resume = (run.label.run_dir / checkpoint.FILENAME).is_file()
        futures[engine.submit(run.label.run_dir, run.config, run.overrides, resume)] = run
    try:
        watch(futures, progress, cc.progress_every)
    except BaseException:
        engine.stop()
        raise
    engine.close()
    return progress.failed


def watch(futures: dict[Future, PlannedRun], progress: GridProgress, every: float) -> None:
    """Report runs as they start and end, and the grid's state every ``every`` seconds, until all ended."""
    announced: dict[Future, float] = {}  # when each run was seen starting
    next_status = time.time() + every
    while futures:
        time.sleep(0.5)
        for future, run in list(futures.items()):
            if future not in announced and written_since(run.label.run_dir / record.LOG_FILE, progress.started_at):
                announced[future] = time.time()
                progress.started(run.label)
            if not future.done():
                continue
            del futures[future]
            if future.exception() is not None and results.diverged(run.label.run_dir):
                progress.diverged_run(run.label, str(future.exception()))
            elif future.exception() is not None:
                progress.failed_run(run.label, repr(future.exception()))
            else:
                s = future.result()  # the time includes what the run's own clock misses (engine start-up)
                took = time.time() - announced.get(future, progress.started_at)
                progress.finished(run.label, took, s)
        if time.time() >= next_status and futures:
            progress.status([futures[f].label for f in futures if f in announced])
            next_status = time.time() + every


def write_outputs(
    cc: CompareConfig,
    runs: list[PlannedRun],
    common: list[str],
    settled: dict[Cell, reevaluation.Settled] | None = None,
    unfinished: Sequence[Cell] = (),
) -> list[results.RunResult]:
    """results.csv, report.md and two plots per data setting (in ``report_folder``), from the finished runs.

    The report's tuning section lists this grid's cells only, those in the report: ``tuned.yaml`` may
    hold another grid's that shares ``out_dir`` (an ablation's beside the comparison's), or an older
    command's choice for a cell whose tuning has not ended; a grid without ``tune`` gets no such section.
    """
    out = report_folder(cc)
    done = [
        results.load_run(r.label.run_dir, r.label.setting, r.label.seed, cc.target_accuracy, r.label.variant)
        for r in runs
        if results.is_finished(r.label.run_dir)
    ]
    results.write_csv(done, out / "results.csv", root=Path(cc.out_dir))
    figures = {s: plots.plot_setting(done, s, out) for s in cc.settings if any(r.setting == s for r in done)}
    settings = {s: [*cc.setting_overrides[s], *common] for s in cc.settings}
    notes = (
        [f"Not in this report yet, their tuning not ended: {', '.join(map(cell_name, unfinished))}."]
        if unfinished
        else []
    )
    if diverged := [r.label for r in runs if results.diverged(r.label.run_dir)]:
        names = ", ".join(f"{cell_name((d.setting, d.strategy, d.variant))} seed {d.seed}" for d in diverged)
        notes.append(f"Diverged, so not in the tables (every reply left out, `{record.IDLE_FILE}`): {names}.")
    report = markdown_report(done, cc.target_accuracy, settings, figures, cc.reference, notes)
    if settled is not None:
        report += settled_report(done, settled, cc.reference)
    if cc.tune and (tuned := Path(cc.out_dir) / tuning.TUNED_FILE).is_file():  # tune=0: its runs took none of it
        left_out = set(unfinished)
        cells = {(s, results.run_label(n, v)) for s in cc.settings for n in cc.strategies for v in cc.variants
                 if (s, n, v) not in left_out}  # fmt: skip
        report += tuning.markdown(yaml.safe_load(tuned.read_text()), cells)
    (out / "report.md").write_text(report)
    return done


def main(argv: list[str]) -> int:
    try:
        cc, common = load_compare(argv)
        runs = plan(cc, common)  # every config checked before the first run, tuned or not
    except (ValueError, FileNotFoundError) as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    report_folder(cc).mkdir(parents=True, exist_ok=True)  # out_dir with it
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a scheduler's kill stops like Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started from a background job
    tuned = not cc.tune  # the runs are planned with their final values
    unfinished: list[Cell] = []  # report_only: cells whose tuning has not ended, left out
    try:
        # one set of workers for the command's every batch: tuning waves, the grid, the settle's evaluations
        with inprocess.Workers(cc.jobs or len(os.sched_getaffinity(0))) as workers:
            if cc.tune:
                chosen, unfinished = tune_grid(cc, common, workers)
                runs, tuned = plan(cc, common, chosen), True
                if unfinished:
                    print(f"report_only: {len(unfinished)} cells left out, their tuning not ended: "
                          f"{', '.join(map(cell_name, unfinished))}", file=sys.stderr, flush=True)  # fmt: skip
            pending = [r for r in runs if not results.has_ended(r.label.run_dir)]  # a diverged one would again
            diverged = sum(results.diverged(r.label.run_dir) for r in runs)
            to_run = f"{len(pending)} to run with engine={cc.engine}" if not cc.report_only else "report only"
            print(
                f"{len(runs)} runs ({len(cc.strategies)} strategies × {len(cc.variants)} variants × "
                f"{len(cc.settings)} settings × {len(cc.seeds)} seeds): "
                f"{len(runs) - len(pending) - diverged} already finished, {to_run}"
                + (f"; {diverged} diverged, ended without a result" if diverged else ""),
                flush=True,
            )
            failed = execute(cc, pending, workers) if pending and not cc.report_only else 0
            settled = None
            if cc.settle:
                settled, failed_again = settle_rerunning(cc, common, runs, workers)
                failed += failed_again
    except TuningUnfinished as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if tuned:  # the report of what finished, as the grid's end would write it
            write_outputs(cc, runs, common)
        print(
            "interrupted; finished runs are kept (results.csv and report.md hold them once the tuning "
            "has ended): repeat the command to go on",
            file=sys.stderr,
        )
        return 130
    done = write_outputs(cc, runs, common, settled, unfinished)
    print(f"{len(done)}/{len(runs)} runs finished; results.csv, report.md and plots in {report_folder(cc).resolve()}")
    if diverged := sum(results.diverged(r.label.run_dir) for r in runs):
        print(f"{diverged} runs diverged and ended without a result (report.md names them; remove a run's "
              "folder to run it again)", file=sys.stderr)  # fmt: skip
    if failed:
        print(f"{failed} runs failed; see their run.log, then repeat the command", file=sys.stderr)
    return 1 if failed else 0


def cli() -> None:
    """``fedhyper-compare`` and ``python -m simulations.compare``."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
