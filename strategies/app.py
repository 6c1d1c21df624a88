"""The ServerApp: discover the clients, run the configured strategy, record the run."""

from __future__ import annotations

import logging

import torch
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from omegaconf import OmegaConf

import strategies
from fedhyper import checkpoint, protocol
from fedhyper.config import ExperimentConfig
from fedhyper.device import select_device
from fedhyper.models import client_width
from fedhyper.reporting import RunReporter
from simulations import sweep
from strategies import experiment
from strategies.base import PersonalizedStrategy
from strategies.directory import ClientDirectory

log = logging.getLogger("fedhyper")
app = ServerApp()
# Inside Flower's simulation process, hand messages to the clients in one pass over the store every
# 5 ms instead of Flower's per-node sweeps 0.1 s apart; elsewhere this does nothing.
sweep.install()


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


def _connect(grid: Grid, exp: experiment.Experiment) -> tuple[ConfigRecord, PersonalizedStrategy]:
    """Validate the config, learn which node is which client, build the strategy."""
    cfg = exp.cfg
    if not exp.fixed_num_clients:
        cfg.data.num_clients = len(list(grid.get_node_ids()))
    cfg.validate()
    if hasattr(grid, "pull_interval"):  # the simulation's in-memory grid polls every 0.1 s by default
        grid.pull_interval = cfg.sim.poll_interval
    common = client_config(cfg)
    exp.run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.structured(cfg), exp.run_dir / "config.yaml")
    directory = ClientDirectory()
    directory.discover(grid, common, expected=cfg.data.num_clients, timeout=cfg.sim.round_timeout)
    unknown = [c for c in directory.client_ids if c >= cfg.data.num_clients]
    if unknown or not len(directory):
        raise ValueError(f"nodes report client ids {unknown or 'none'} for data.num_clients={cfg.data.num_clients}")
    return common, strategies.get(cfg.strategy.name).build(cfg, directory)


def run(grid: Grid, exp: experiment.Experiment) -> dict:
    """Discover the clients, run (or continue) the strategy, checkpoint and record the run."""
    cfg = exp.cfg
    common, strategy = _connect(grid, exp)
    reporter = RunReporter(
        exp.run_dir, cfg.strategy.name, len(strategy.directory), strategy.total_rounds, fresh=not exp.resume
    )
    checkpoint_file = exp.run_dir / checkpoint.FILENAME
    if exp.resume:
        state = checkpoint.load_checkpoint(checkpoint_file)
        strategy.load_state_dict(state["strategy"])
        reporter.load_state_dict(state["reporter"])
        torch.set_rng_state(state["torch_rng"])
        strategy.round_offset = state["round"]
        log.info("resuming after round %d from %s", state["round"], checkpoint_file)
    else:
        strategy.evaluate(grid, 0, ConfigRecord(dict(common)), cfg.sim.round_timeout)
        reporter.record(0, strategy.round_metrics, strategy.client_metrics)

    def after_round(server_round: int) -> None:
        done = strategy.round_offset + server_round
        reporter.record(done, strategy.round_metrics, strategy.client_metrics)
        if cfg.sim.checkpoint_every and (done % cfg.sim.checkpoint_every == 0 or done == strategy.total_rounds):
            checkpoint.save_checkpoint(
                checkpoint_file,
                {
                    "round": done,
                    "strategy": strategy.state_dict(),
                    "reporter": reporter.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                },
            )

    if not cfg.sim.flower_logs:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    strategy.run_rounds(
        grid,
        strategy.total_rounds - strategy.round_offset,
        ConfigRecord(dict(common)),
        cfg.sim.round_timeout,
        after_round,
    )
    strategy.write_figures(exp.run_dir, cfg.data, cfg.seed)
    last = reporter.evaluations()[-1] if reporter.evaluations() else {}
    novel = {k: last[k] for k in ("novel_accuracy", "generalization_gap") if k in last}
    return reporter.finish(
        strategy.accuracy,
        **strategy.summary_extras(),
        **({"novel_clients": strategy.novel_ids, **novel} if strategy.novel_ids else {}),
        widths={cid: client_width(cfg.model, cid) for cid in strategy.accuracy},
        rejected_replies=dict(strategy.replies.rejected),
        server_device=str(select_device(cfg.device)),
        message_sweep="fedhyper" if sweep.in_use.is_set() else "flower",
    )
