"""Experiment tracking: a run's rounds, summary and files in TensorBoard or MLflow (``tracking=``).

The run record (``fedhyper.reporting.RunReporter``) hands every round's row and the final
summary to a ``RunTracking``, which starts the configured ``Tracker`` at the first row it sees:
round 0 for a new run, the round after the checkpoint for a resumed one. A tracker says which
step it lacks first, so a resumed run continues its tracked run without a repeated or missing
step. Tracking never stops a run: its first failure (an unreachable server, a full disk) is one
warning and the run goes on untracked. With ``tracking=none`` nothing here imports TensorBoard or
MLflow and a round costs one attribute test.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fedhyper.record import CONFIG_FILE, METRICS_FILE, ROUND, SUMMARY_FILE
from fedhyper.results import run_label

if TYPE_CHECKING:
    from fedhyper.config import ExperimentConfig

log = logging.getLogger("fedhyper")

# backend -> the package it needs (the ``tracking`` extra: pip install 'fedhyper[tracking]')
BACKENDS = {"none": None, "tensorboard": "tensorboard", "mlflow": "mlflow"}
STORE_FILE = "mlflow.db"  # the local MLflow store when tracking.uri is empty
OUTPUTS = Path("outputs")  # the output folder of simulations.run and simulations.deploy (Hydra's default root)
DEFAULT_EXPERIMENT = "fedhyper"  # the MLflow experiment of single runs
SUMMARY_PREFIX = "summary/"  # summary.json's numbers, apart from the per-round metrics of the same name
NOT_SUMMARY_METRICS = ("machine",)  # summary.json's keys that describe the run, not measure it
NOT_METRICS = (ROUND,)  # the step itself


@dataclass
class TrackingConfig:
    """Where a run's metrics, summary and files go besides its run directory."""

    backend: str = "none"  # none | tensorboard (event files in the run directory) | mlflow
    # MLflow only: a tracking server (http://host:5000) or store URI; empty: a SQLite file mlflow.db in
    # the output folder (outputs/ for simulations.run and simulations.deploy, out_dir for simulations.compare).
    uri: str = ""
    experiment: str = ""  # MLflow experiment; empty: "fedhyper", or out_dir's name for a grid
    # Labels beside strategy and seed (a grid adds setting and variant): MLflow tags, TensorBoard hparams.
    tags: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            choices = " or ".join(f"tracking={b}" for b in BACKENDS)
            raise ValueError(f"tracking.backend={self.backend!r} is unknown; choose {choices}")
        package = BACKENDS[self.backend]
        if package and importlib.util.find_spec(package) is None:
            raise ValueError(
                f"tracking={self.backend} needs the package {package}: "
                "pip install 'fedhyper[tracking]', or set tracking=none"
            )


class Tracker(Protocol):
    """One tracked run in one backend."""

    def start(self, params: dict[str, str], tags: dict[str, str], resume_step: int) -> int:
        """Open the run's record; ``resume_step``: the first step this process will log (0: a new run).

        Returns the first step the backend lacks (at most ``resume_step``); earlier steps are not logged again.
        """
        ...

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...

    def log_summary(self, metrics: dict[str, float]) -> None:
        """The run's final numbers, at its last step."""
        ...

    def log_artifacts(self, paths: list[Path]) -> None: ...

    def close(self, failed: bool = False) -> None:
        """End the run's record: finished, or ``failed`` (the run raised before its summary)."""
        ...


class RunTracking:
    """Feeds one run's record to a tracker: rows as rounds end, then the summary and the run's files."""

    def __init__(self, tracker: Tracker | None, params: dict[str, str], tags: dict[str, str], run_dir: Path) -> None:
        self.tracker = tracker  # None: tracking is off, or failed once
        self.params, self.tags, self.run_dir = params, tags, Path(run_dir)
        self.started = False

    def record(self, history: list[dict[str, Any]]) -> None:
        """Log the last row of ``history``; at the first call, also the earlier rows the tracker lacks."""
        if self.tracker is None:
            return
        with self._guard():
            step = history[-1][ROUND]
            if not self.started:
                lacks = self.tracker.start(self.params, self.tags, resume_step=step)
                self.started = True
                for row in history[:-1]:
                    if row[ROUND] >= lacks:
                        self.tracker.log_metrics(row[ROUND], round_metrics(row))
            self.tracker.log_metrics(step, round_metrics(history[-1]))

    def finish(self, summary: Any) -> None:
        """Log the summary's numbers and the run's files (config, summary, metrics, figures), then close.

        ``summary``: what summary.json holds, as a dict or a dataclass.
        """
        if self.tracker is None or not self.started:
            return
        values = dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else dict(summary)
        with self._guard():
            self.tracker.log_summary(summary_metrics(values))
            self.tracker.log_artifacts(run_files(self.run_dir))
        self._close(failed=False)

    def fail(self) -> None:
        """Mark the tracked run failed and close it: the run raised, and no summary will come."""
        self._close(failed=True)

    def _close(self, failed: bool) -> None:
        """End the started tracker's run, once; a tracker that failed before (None) is left alone."""
        if self.tracker is None or not self.started:
            return
        with self._guard():
            self.tracker.close(failed=failed)
        self.tracker = None

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except Exception as err:  # a tracker fails in many ways (network, disk, the backend's own errors)
            first = str(err).splitlines()[0] if str(err) else repr(err)
            log.warning("tracking failed, the run goes on without it: %s", first)
            self.tracker = None  # not closed: closing a dead server's run would wait on MLflow's retries again


OFF = RunTracking(None, {}, {}, Path())  # tracking=none: every call returns at once


def open_run(cfg: ExperimentConfig, run_dir: Path) -> RunTracking:
    """The tracking of one run as ``cfg.tracking`` asks; imports a backend only when one is chosen."""
    tc = cfg.tracking
    params = {k: str(v) for k, v in flatten(dataclasses.asdict(cfg), skip=("tracking",)).items()}
    tags = run_tags(cfg)
    tracker: Tracker | None = None
    if tc.backend == "tensorboard":
        from fedhyper.tracking.tensorboard_tracker import TensorBoardTracker

        tracker = TensorBoardTracker(Path(run_dir))
    elif tc.backend == "mlflow":
        from fedhyper.tracking.mlflow_tracker import MlflowTracker

        uri = tc.uri or store_uri(Path(run_dir).parent)  # a bare `flwr run`: no launcher chose the store
        tracker = MlflowTracker(uri, tc.experiment or DEFAULT_EXPERIMENT, Path(run_dir), run_name(tags))
    return RunTracking(tracker, params, tags, run_dir)


def run_tags(cfg: ExperimentConfig) -> dict[str, str]:
    name = cfg.strategy.name if cfg.strategy is not None else ""
    return {"strategy": name, "seed": str(cfg.seed), **{k: str(v) for k, v in cfg.tracking.tags.items()}}


def run_name(tags: dict[str, str]) -> str:
    """``pfedhn seed0``; in a grid ``pfedhn/<variant> <setting> seed0`` (the base variant unnamed, as in report.md)."""
    label = run_label(tags["strategy"], tags["variant"]) if "variant" in tags else tags["strategy"]
    return " ".join(p for p in (label, tags.get("setting", ""), f"seed{tags['seed']}") if p)


def flatten(tree: dict[str, Any], prefix: str = "", skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{"data": {"alpha": 0.3}}`` -> ``{"data.alpha": 0.3}``; lists are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if key in skip:
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def round_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl row's numbers, keyed as in the row."""
    return {k: float(v) for k, v in row.items() if k not in NOT_METRICS and _is_number(v)}


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """summary.json's numbers (nested ones dotted: ``summary/seconds_to_accuracy.0.95``); lists and text are files,
    and so is the machine that ran the run (its core count is a number, not a result)."""
    flat = flatten(summary, skip=NOT_SUMMARY_METRICS)
    return {f"{SUMMARY_PREFIX}{k}": float(v) for k, v in flat.items() if _is_number(v)}


def run_files(run_dir: Path) -> list[Path]:
    """What a tracker keeps of a finished run: its config, summary, metric rows and figures."""
    named = [run_dir / name for name in (CONFIG_FILE, SUMMARY_FILE, METRICS_FILE)]
    return [p for p in named if p.is_file()] + sorted(run_dir.glob("*.png"))


def store_uri(folder: Path) -> str:
    """The local MLflow store of an output folder: a SQLite file in it."""
    return f"sqlite:///{(Path(folder).resolve() / STORE_FILE).as_posix()}"


def with_store(tc: TrackingConfig, folder: Path) -> TrackingConfig:
    """``tc`` with its MLflow store chosen: ``tracking.uri`` if given, else the SQLite file in ``folder``."""
    if tc.backend != "mlflow" or tc.uri:
        return tc
    return dataclasses.replace(tc, uri=store_uri(folder))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def grid_config(tc: TrackingConfig, out_dir: str | Path) -> TrackingConfig:
    """A grid's tracking: one MLflow store (``out_dir/mlflow.db`` unless ``tracking.uri``) and one experiment."""
    tc = with_store(tc, Path(out_dir))
    return dataclasses.replace(tc, experiment=tc.experiment or Path(out_dir).resolve().name)


def grid_overrides(tc: TrackingConfig, out_dir: str | Path, setting: str, variant: str) -> list[str]:
    """What ``simulations.compare`` adds to a grid run's overrides: the grid's store and experiment, its cell's tags."""
    if tc.backend == "none":
        return []
    grid = grid_config(tc, out_dir)
    store = [f"tracking.uri={_quoted(grid.uri)}", f"tracking.experiment={_quoted(grid.experiment)}"]
    cell = [f"++tracking.tags.setting={setting}", f"++tracking.tags.variant={variant}"]
    return [*store, *cell] if tc.backend == "mlflow" else cell


def prepare_grid(tc: TrackingConfig, out_dir: str | Path) -> None:
    """Create the grid's MLflow store and experiment once, before its runs write to them side by side."""
    if tc.backend != "mlflow":
        return
    from fedhyper.tracking.mlflow_tracker import experiment_id, reachable_client

    grid = grid_config(tc, out_dir)
    try:
        experiment_id(reachable_client(grid.uri), grid.experiment)
    except Exception as err:  # each run will try again, and warn in its own log
        log.warning("tracking: could not prepare MLflow experiment %r at %s: %s", grid.experiment, grid.uri, err)


def _quoted(value: str) -> str:
    """A Hydra override value that keeps ``:``, ``/`` and spaces as they are."""
    return "'" + value.replace("'", "\\'") + "'"
