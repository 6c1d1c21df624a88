"""The ServerApp: discover the clients, compose the round loop around the configured strategy, record the run."""

from __future__ import annotations

import logging

import torch
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from omegaconf import OmegaConf

from fedhyper import checkpoint, privacy, protocol, record, tracking
from fedhyper.config import ExperimentConfig
from fedhyper.device import machine, select_device
from fedhyper.models import client_width
from fedhyper.record import Summary
from fedhyper.reporting import RunReporter
from strategies import experiment, registry
from strategies.base import PersonalizedStrategy
from strategies.directory import ClientDirectory
from strategies.evaluation import Evaluations
from strategies.figures import EmbeddingFigure
from strategies.loop import Checkpointer, IdleRun, ReportRounds, RoundLoop
from strategies.privacy import PrivacyBudget
from strategies.replies import ReplySorter
from strategies.schedule import FaultOrders, Schedule

log = logging.getLogger("fedhyper")
app = ServerApp()
CLIENTS_PART = "clients"  # the checkpoint's entry for the clients' kept state, where the grid holds it
LOOP_PART = "loop"  # the round loop's idle count; checkpoints written before it had one lack it


def client_config(cfg: ExperimentConfig) -> ConfigRecord:
    """What every client needs to find its data, build its model and train it.

    Evaluation messages carry the local training config too: some methods adapt the model
    on local data before evaluating it (FedAvg-FT, Per-FedAvg).
    """
    return ConfigRecord(
        {
            **protocol.encode(protocol.DATA_PREFIX, cfg.data),
            **protocol.encode(protocol.MODEL_PREFIX, cfg.model),
            **protocol.encode(protocol.LOCAL_PREFIX, cfg.strategy.local),
            protocol.SEED: cfg.seed,
            protocol.EVAL_TEST: cfg.sim.eval_test,
        }
    )


def _log_to_console() -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s fedhyper | %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


@app.main()
def main(grid: Grid, context: Context) -> None:
    _log_to_console()
    exp = experiment.load(context.run_config)
    if exp.cfg.sim.server_threads > 0:
        torch.set_num_threads(exp.cfg.sim.server_threads)
    run(grid, exp)


def connect(grid: Grid, exp: experiment.Experiment) -> tuple[ConfigRecord, PersonalizedStrategy]:
    """Validate the config, build the strategy, learn which node is which client."""
    cfg = exp.cfg
    if not exp.fixed_num_clients:
        cfg.data.num_clients = len(list(grid.get_node_ids()))
    cfg.validate()
    if hasattr(grid, "pull_interval"):  # the simulation's in-memory grid polls every 0.1 s by default
        grid.pull_interval = cfg.sim.poll_interval
    common = client_config(cfg)
    exp.run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.structured(cfg), exp.run_dir / record.CONFIG_FILE)
    directory = ClientDirectory()
    # Built first, while the simulation's clients start (its hypernetwork alone took ~1 s of start-up);
    # a strategy reads the directory only once rounds run.
    strategy = registry.build(cfg, directory)
    directory.discover(grid, common, expected=cfg.data.num_clients, timeout=cfg.sim.round_timeout)
    unknown = [c for c in directory.client_ids if c >= cfg.data.num_clients]
    if unknown or not len(directory):
        raise ValueError(f"nodes report client ids {unknown or 'none'} for data.num_clients={cfg.data.num_clients}")
    return common, strategy


def round_loop(cfg: ExperimentConfig, strategy: PersonalizedStrategy, grid: Grid, common: ConfigRecord) -> RoundLoop:
    """The round loop around ``strategy``: its schedule, fault orders, reply checks and evaluations."""
    schedule = Schedule(cfg, strategy.directory.client_ids, strategy.adapts_novel_clients)
    faults = FaultOrders(cfg.faults, cfg.seed, sleep=cfg.sim.round_timeout + 2.0)
    evaluations = Evaluations(schedule.novel_ids)
    return RoundLoop(strategy, schedule, faults, ReplySorter(strategy.directory), evaluations, grid, common, cfg.sim)


def run(grid: Grid, exp: experiment.Experiment) -> Summary:
    """Discover the clients, run (or continue) the strategy's rounds, checkpoint and record the run."""
    cfg = exp.cfg
    common, strategy = connect(grid, exp)
    loop = round_loop(cfg, strategy, grid, common)
    schedule = loop.schedule
    reporter = RunReporter(exp.run_dir, cfg.strategy.name, len(strategy.directory), schedule.total_rounds,
                           fresh=not exp.resume, tracking=tracking.open_run(cfg, exp.run_dir))  # fmt: skip
    parts = {"strategy": strategy, "schedule": schedule, "faults": loop.faults, "replies": loop.replies,
             "evaluations": loop.evaluations, "reporter": reporter, LOOP_PART: loop}  # fmt: skip
    mech = privacy.mechanism(cfg)
    budget = None if mech is None else PrivacyBudget(mech, cfg.sim.num_rounds)
    if budget is not None:  # ε in each round's row (before the record is written) and in the checkpoint
        parts["privacy"], loop.stop = budget, budget
    if hasattr(grid, "state_dict"):  # a grid that holds its clients (the in-process engine): their kept state too
        parts[CLIENTS_PART] = grid
    checkpointer = Checkpointer(
        exp.run_dir / checkpoint.FILENAME,
        cfg.sim.checkpoint_every,
        schedule.total_rounds,
        parts,
        optional={CLIENTS_PART, LOOP_PART},
    )
    figure = EmbeddingFigure(strategy, schedule.novel_ids, exp.run_dir, cfg.data, cfg.seed)
    loop.callbacks = [*([budget] if budget else []), ReportRounds(reporter), checkpointer, figure]
    first_round = checkpointer.restore() + 1 if exp.resume else 0
    if not cfg.sim.flower_logs:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    try:
        loop.run(first_round)
        last = reporter.evaluations()[-1] if reporter.evaluations() else {}
        novel = {k: last[k] for k in (record.NOVEL_ACCURACY, record.GENERALIZATION_GAP) if k in last}
        engine = getattr(grid, "engine", record.FLOWER)  # the in-process grid names itself
        # the run's CPU time where its clients trained in this process (record.Summary.cpu_time_s)
        cpu = reporter.cpu_seconds() if engine == record.INPROCESS else None
        cpu_time = None if cpu is None else round(cpu, 3)
        return reporter.finish(
            loop.evaluations.accuracy,
            **strategy.summary_extras(),
            **({"novel_clients": schedule.novel_ids, **novel} if schedule.novel_ids else {}),
            widths={cid: client_width(cfg.model, cid) for cid in loop.evaluations.accuracy},
            rejected_replies=dict(loop.replies.rejected),
            server_device=str(select_device(cfg.device)),
            engine=engine,
            cpu_time_s=cpu_time,
            machine=machine(),
            privacy=None if budget is None else budget.report(),
        )
    except BaseException as err:  # the rounds or the summary: the tracked run ends failed (no-op once finished)
        if isinstance(err, IdleRun):  # recorded: a grid does not run a diverged run again, its config's outcome
            reporter.stopped_idle(err.server_round, str(err), err.diverged)
        reporter.tracking.fail()  # an MLflow run left RUNNING would look alive in the UI for ever
        raise
