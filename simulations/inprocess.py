"""The in-process engine: the real ServerApp body and the real ClientApp in one process, no transport.

``InProcessGrid`` is a Flower ``Grid`` that hands each message straight to ``clients.app.app``
and returns its reply, so ``strategies.app.run`` drives a whole simulation without a SuperLink
or Ray. It holds no training logic: what runs is exactly what a Flower simulation runs, one
client after another. Tests use it, and ``simulations.compare`` (``engine=inprocess``) runs
grids of small runs with it, one run a process.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from omegaconf import OmegaConf

from clients.app import app as client_app
from fedhyper import protocol, record
from fedhyper.config import ExperimentConfig
from fedhyper.record import Summary
from strategies import experiment
from strategies.app import run as server_run

log = logging.getLogger("fedhyper")


class InProcessGrid:
    """A Flower Grid that delivers each message to the real ClientApp in this process.

    Node ids are arbitrary and unrelated to client ids, as on a real transport; node i
    holds partition ``partition_of[i]``. Tests can drop or tamper with replies through
    ``on_reply``.
    """

    engine = record.INPROCESS  # what the ServerApp writes into summary.json

    def __init__(
        self, num_clients: int, node_offset: int = 1000, on_reply: Callable[[Message], Message | None] | None = None
    ) -> None:
        # Messages are stamped with the run and node of the process that builds them.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self.app = client_app
        self.sent: list[Message] = []
        self.on_reply = on_reply
        # Shuffled node ids so that node order says nothing about client ids.
        ids = list(range(num_clients))[::-1]
        self.contexts = {
            node_offset + 7 * i: Context(
                run_id=1,
                node_id=node_offset + 7 * i,
                node_config={protocol.NODE_PARTITION_ID: cid, "num-partitions": num_clients},
                state=RecordDict(),
                run_config={},
            )
            for i, cid in enumerate(ids)
        }

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def state_dict(self) -> dict[int, dict[str, dict[str, torch.Tensor]]]:
        """Every client's kept state (``Context.state``: private heads, personal models) by client id.

        The server never holds this state; this grid holds its clients, so a checkpoint can keep it
        and a resumed run continues each client's kept parts instead of starting them afresh.
        """
        state = {}
        for context in self.contexts.values():
            if context.state.config_records or context.state.metric_records:
                raise ValueError("the in-process grid checkpoints clients' array records only")
            kept = {key: protocol.record_to_weights(r) for key, r in context.state.array_records.items()}
            state[int(context.node_config[protocol.NODE_PARTITION_ID])] = kept
        return state

    def load_state_dict(self, state: dict[int, dict[str, dict[str, torch.Tensor]]]) -> None:
        for context in self.contexts.values():
            kept = state.get(int(context.node_config[protocol.NODE_PARTITION_ID]), {})
            context.state = RecordDict({key: protocol.weights_to_record(w) for key, w in kept.items()})

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        replies = []
        for msg in messages:
            self.sent.append(msg)
            if msg.content.config_records.get(protocol.CONFIG, {}).get(protocol.FAULT) == "timeout":
                continue  # what the server sees of a client that overran the timeout: nothing
            try:
                reply = self.app(msg, self.contexts[msg.metadata.dst_node_id])
            except Exception as err:  # Flower's runtime turns a raising ClientApp into an error reply
                reply = Message(Error(code=0, reason=repr(err)), reply_to=msg)
            if self.on_reply is not None:
                reply = self.on_reply(reply)
            if reply is not None:
                replies.append(reply)
        return replies


def run_experiment(cfg: ExperimentConfig, run_dir: Path, resume: bool = False) -> Summary:
    """Run one experiment in this process and return its summary; its log goes to ``run_dir/run.log``.

    The run's per-round lines go to the log file only, so that a grid of runs prints one
    progress line for all of them instead of every run's rounds interleaved.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / record.LOG_FILE, mode="a" if resume else "w")
    handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s fedhyper | %(message)s", "%H:%M:%S"))
    propagate, level = log.propagate, log.level
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        grid = InProcessGrid(cfg.data.num_clients)
        return server_run(grid, experiment.Experiment(cfg, run_dir, fixed_num_clients=True, resume=resume))
    finally:
        log.removeHandler(handler)
        handler.close()
        log.propagate = propagate
        log.setLevel(level)


def worker_init() -> None:
    """A grid worker process: one torch thread, so that ``jobs`` runs share the cores without contention."""
    torch.set_num_threads(1)


def worker_pool(parallel: int) -> ProcessPoolExecutor:
    """``parallel`` spawned grid workers (``worker_init``): for runs and for re-evaluations of their checkpoints."""
    return ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init)


class Workers:
    """A command's grid workers (``worker_pool(size)``), started on first use and kept until it ends.

    Its runs, tuning trials and re-evaluations of checkpoints all go to the same workers, so a worker's
    start (importing torch and Flower, building a first optimiser: seconds of CPU) is paid once per command,
    not once per batch (each tuning wave, the grid, each settle).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor: ProcessPoolExecutor | None = None

    @property
    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:  # no process starts until a task is submitted
            self._executor = worker_pool(self.size)
        return self._executor

    def close(self) -> None:
        """Wait for what was submitted, then end the workers."""
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def stop(self) -> None:
        """Drop what is queued and end the workers now, a run in one of them with it (Ctrl-C)."""
        if self._executor is None:
            return
        self._executor.shutdown(wait=False, cancel_futures=True)
        for worker in multiprocessing.active_children():  # the pool's workers
            worker.terminate()
        self._executor.shutdown()
        self._executor = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.stop() if exc_type is not None else self.close()


def run_resolved(config: dict[str, Any], run_dir: str, resume: bool = False) -> Summary:
    """Run a resolved experiment config (a plain dict, as a worker process receives it); return its summary."""
    return run_experiment(experiment.typed(OmegaConf.create(config)), Path(run_dir), resume)
