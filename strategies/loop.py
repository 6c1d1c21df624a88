"""The round loop: train the sampled clients, evaluate when due, then hand the round to the callbacks.

Rounds are absolute: round 0 evaluates before training, rounds 1..total train, and a resumed
run starts at the round after its checkpoint's, so every round number means the same in a
resumed run as in an uninterrupted one. The pieces around the algorithm are small objects the
loop is given: the ``Schedule`` (who takes part), ``FaultOrders`` (who is told to fail), the
``Exchange`` of each phase (messaging, reply checks, traffic), ``Evaluations`` (the accuracy
sums), and callbacks run after each round and once at the end (the record, checkpoints, figures).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from flwr.app import ConfigRecord, MessageType
from flwr.serverapp import Grid

from fedhyper import checkpoint, protocol, validation
from fedhyper.config import SimConfig
from fedhyper.reporting import RunReporter
from fedhyper.training import schedule_factor
from strategies.base import PersonalizedStrategy
from strategies.evaluation import Evaluations
from strategies.exchange import Exchange, RoundMetrics
from strategies.replies import Reply, ReplySorter, evaluation_check, train_check
from strategies.schedule import FaultOrders, Schedule

log = logging.getLogger("fedhyper")


class Callback(Protocol):
    def after_round(self, server_round: int, metrics: RoundMetrics) -> None: ...

    def after_run(self) -> None: ...


class StopRule(Protocol):
    def last_round(self, server_round: int) -> bool: ...


class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


# Replies left out for what training computed, not for how the client or the transport failed.
DIVERGENCE = frozenset({validation.NONFINITE, validation.HUGE})


class IdleRun(RuntimeError):
    """``sim.max_idle_rounds`` training rounds in a row changed nothing: the run cannot train.

    ``diverged``: every reply those rounds left out had NaN/Inf or an update norm over the bound, so the
    configuration diverges and running it again gives the same; otherwise (clients raised, timed
    out, replied malformed) the cause may be the machine or the code, and it is worth running again.
    """

    def __init__(self, server_round: int, message: str, diverged: bool) -> None:
        super().__init__(message)
        self.server_round, self.diverged = server_round, diverged

    def __reduce__(self) -> tuple[type, tuple[int, str, bool]]:  # rebuilt where the grid's worker hands it over
        return IdleRun, (self.server_round, str(self), self.diverged)


class NoFinalEvaluation(RuntimeError):
    """No client's reply to the run's last evaluation was valid: the run has no final accuracy.

    Raised before that round is recorded or checkpointed, so the run writes no summary (a grid
    counts it as failed, not finished) and a resumed run repeats the round and its evaluation.
    Without it, the summary's final accuracy would be an earlier round's.
    """


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class RoundLoop:
    """Runs an algorithm's rounds on a grid; the pieces it composes are its fields."""

    strategy: PersonalizedStrategy
    schedule: Schedule
    faults: FaultOrders
    replies: ReplySorter
    evaluations: Evaluations
    grid: Grid
    config: ConfigRecord  # what every client needs (data, model, local training); the round is added
    sim: SimConfig
    callbacks: list[Callback] = field(default_factory=list)
    # Clients whose weights are generated at once for evaluation: the server holds at most this
    # many models, however many clients it evaluates (Flower's loop would send them all at once).
    eval_chunk: int = 256
    # Asked after each round's training whether it is the last (privacy.max_epsilon); a stopped run
    # evaluates as at its final round and ends.
    stop: StopRule | None = None
    idle_rounds: int = field(default=0, init=False)  # training rounds in a row that changed nothing
    idle_rejected: Counter[str] = field(default_factory=Counter, init=False)  # their replies left out, by reason

    def state_dict(self) -> dict[str, Any]:
        """The idle rounds in a row and what they left out, so that a resumed run stops as one that was not."""
        return {"idle_rounds": self.idle_rounds, "idle_rejected": dict(self.idle_rejected)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.idle_rounds = int(state["idle_rounds"])
        # Checkpoints written before the idle rounds' reasons were kept: unknown, so a stop there is not
        # counted as diverged and the grid runs it again.
        self.idle_rejected = Counter(state.get("idle_rejected", {}))

    def run(self, first_round: int = 0) -> None:
        """Rounds ``first_round`` .. ``schedule.total_rounds``; round 0 only evaluates."""
        log.info("%s: %d clients, %d per round, evaluation every %d rounds", type(self.strategy).__name__,
                 len(self.strategy.directory), self.sim.clients_per_round, self.sim.eval_every)  # fmt: skip
        for server_round in range(first_round, self.schedule.total_rounds + 1):
            metrics = RoundMetrics()
            if server_round > 0:
                self.train(server_round, metrics)
            last = self.stop is not None and self.stop.last_round(server_round)
            final = last or server_round == self.schedule.total_rounds  # evaluated as the run's last round
            evaluated = self.schedule.evaluated_clients(self.schedule.total_rounds if final else server_round)
            if evaluated:
                evaluation = self.evaluate(server_round, evaluated, metrics)
                if final and not evaluation:
                    raise NoFinalEvaluation(
                        f"round {server_round}: none of the {len(evaluated)} clients asked to evaluate sent a "
                        f"valid reply, so the run has no final accuracy; replies left out so far: {self.rejections()}"
                    )
                metrics.values.update(evaluation)
            for callback in self.callbacks:
                callback.after_round(server_round, metrics)
            if last:
                break
        for callback in self.callbacks:
            callback.after_run()

    def exchange(self, server_round: int, phase: str, metrics: RoundMetrics, orders: dict | None = None) -> Exchange:
        config = ConfigRecord({**self.config, protocol.ALGORITHM: self.strategy.name,
                               **self.strategy.client_settings(), protocol.SERVER_ROUND: server_round})  # fmt: skip
        if phase == MessageType.TRAIN:  # the round's lr; evaluation's adaptation keeps local.lr
            # The novel clients' rounds (after training) decay over their own phase, from local.lr again:
            # they start from fresh embeddings, not from where the trained clients' schedule ended.
            r, rounds = server_round, self.sim.num_rounds
            if r > rounds:
                r, rounds = r - rounds, self.sim.novel_rounds
            config[protocol.LOCAL_LR] = self.config[protocol.LOCAL_LR] * schedule_factor(
                str(self.config[protocol.LOCAL_LR_SCHEDULE]), r, rounds
            )
        return Exchange(self.grid, self.strategy.directory, self.replies, self.sim.round_timeout,
                        server_round, phase, config, metrics, orders)  # fmt: skip

    def train(self, server_round: int, metrics: RoundMetrics) -> None:
        """Send the sampled clients their weights; apply the valid replies unless fewer than ``sim.min_replies``."""
        rejected_before = Counter(self.replies.rejected)
        client_ids = self.schedule.sample(server_round)
        calls = self.exchange(server_round, MessageType.TRAIN, metrics, self.faults.orders(client_ids))
        plan = self.strategy.configure_train(server_round, client_ids, calls)
        contents = {cid: {protocol.ARRAYS: arrays} for cid, arrays in plan.sent.items()}
        replies = calls.ask(MessageType.TRAIN, contents, train_check(plan.sent, self.sim.max_update_norm))
        if len(replies) < self.sim.min_replies:
            log.warning("round %d: %d valid replies < sim.min_replies=%d; nothing changes",
                        server_round, len(replies), self.sim.min_replies)  # fmt: skip
            self.idle_rounds += 1
            self.idle_rejected += self.replies.rejected - rejected_before
            if self.sim.max_idle_rounds and self.idle_rounds >= self.sim.max_idle_rounds:
                diverged = bool(self.idle_rejected) and set(self.idle_rejected) <= DIVERGENCE
                raise IdleRun(server_round, self.idle_message(server_round), diverged)
            return
        self.idle_rounds, self.idle_rejected = 0, Counter()
        metrics.values.update(self.strategy.aggregate_train(server_round, plan, replies, calls))

    def rejections(self) -> str:
        """The replies left out so far, by reason, each with its latest detail."""
        reasons = "; ".join(f"{code} x{n} (latest: {self.replies.last_detail[code]})"
                            for code, n in self.replies.rejected.most_common())  # fmt: skip
        return reasons or "none"

    def idle_message(self, server_round: int) -> str:
        return (
            f"round {server_round}: {self.idle_rounds} training rounds in a row had fewer than "
            f"sim.min_replies={self.sim.min_replies} valid replies (sim.max_idle_rounds="
            f"{self.sim.max_idle_rounds}); replies left out so far: {self.rejections()}"
        )

    def evaluate(self, server_round: int, client_ids: list[int], metrics: RoundMetrics) -> dict[str, float]:
        """Evaluate ``client_ids`` ``eval_chunk`` at a time; a chunk's replies return before the next is built."""
        calls = self.exchange(server_round, MessageType.EVALUATE, metrics)
        valid: dict[int, Reply] = {}
        for ids in chunks(client_ids, self.eval_chunk):
            payloads = self.strategy.configure_evaluate(server_round, ids, calls)
            contents = {cid: {protocol.ARRAYS: arrays} for cid, arrays in payloads.items()}
            valid.update(calls.ask(MessageType.EVALUATE, contents, evaluation_check))
        return self.evaluations.summarise(valid)


class ReportRounds:
    """Appends each round to the run's record (metrics.jsonl, clients.jsonl)."""

    def __init__(self, reporter: RunReporter) -> None:
        self.reporter = reporter

    def after_round(self, server_round: int, metrics: RoundMetrics) -> None:
        self.reporter.record(server_round, metrics.values, metrics.clients)

    def after_run(self) -> None:
        pass


class Checkpointer:
    """Writes checkpoint.pt every ``every`` rounds and after the last; ``restore`` continues from it.

    A part named in ``optional`` may be missing from a checkpoint (one written where it did not
    exist: the clients' state of a Flower run resumed in-process); it then starts afresh.
    """

    def __init__(
        self, path: Path, every: int, last_round: int, parts: dict[str, Stateful], optional: Collection[str] = ()
    ) -> None:
        self.path, self.every, self.last_round, self.parts = Path(path), every, last_round, parts
        self.optional = set(optional)

    def after_round(self, server_round: int, metrics: RoundMetrics) -> None:
        due = server_round % self.every == 0 or server_round == self.last_round if self.every else False
        if server_round > 0 and due:
            state = {name: part.state_dict() for name, part in self.parts.items()}
            checkpoint.save_checkpoint(self.path, {"round": server_round, **state, "torch_rng": torch.get_rng_state()})

    def after_run(self) -> None:
        pass

    def restore(self) -> int:
        """Load every part's state and torch's generator from the checkpoint; return its round."""
        state = checkpoint.load_checkpoint(self.path)
        for name, part in self.parts.items():
            if name not in state and name in self.optional:
                log.warning("the checkpoint %s holds no %s state: it starts afresh", self.path, name)
                continue
            if name not in state:
                raise ValueError(f"the checkpoint {self.path} holds no {name} state, which this run needs")
            part.load_state_dict(state[name])
        torch.set_rng_state(state["torch_rng"])
        log.info("resuming after round %d from %s", state["round"], self.path)
        return int(state["round"])
