"""What every personalised strategy shares: clients addressed by id, one message each.

Flower's FedAvg sends one RecordDict to every sampled node; a personalised strategy sends
each client its own weights. ``PersonalizedStrategy`` keeps FedAvg's reply checks and
logging and replaces sampling and message construction; an algorithm supplies what each
client receives (``train_payloads`` / ``eval_payloads``) and what it does with the replies
(``aggregate_train``).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterable, Iterator

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedhyper import protocol
from strategies.directory import ClientDirectory

log = logging.getLogger(__name__)


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class PersonalizedStrategy(FedAvg):
    """Samples client ids with a seeded generator and evaluates every client's own model."""

    eval_chunk = 256  # clients whose weights are generated at once for evaluation

    def __init__(
        self, directory: ClientDirectory, clients_per_round: int, eval_every: int, num_rounds: int, seed: int
    ) -> None:
        n = max(len(directory), 1)
        super().__init__(
            fraction_train=min(clients_per_round / n, 1.0),
            min_train_nodes=1,
            min_evaluate_nodes=1,
            min_available_nodes=1,
            weighted_by_key=protocol.NUM_EXAMPLES,
            arrayrecord_key=protocol.ARRAYS,
            configrecord_key=protocol.CONFIG,
        )
        self.directory = directory
        self.clients_per_round = clients_per_round
        self.eval_every = eval_every
        self.num_rounds = num_rounds
        self.rng = np.random.default_rng(seed)
        self.accuracy: dict[int, float] = {}  # each client's accuracy at the last evaluation
        self.round_metrics: dict[str, float] = {}  # filled during a round, read by the reporter
        self.client_metrics: list[dict[str, float | str]] = []  # every reply's metrics this round

    # --- what an algorithm provides ------------------------------------------------
    @abstractmethod
    def train_payloads(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        """The arrays each sampled client trains from."""

    @abstractmethod
    def eval_payloads(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        """The arrays each client is evaluated with (its personalised model)."""

    # --- sampling and messages ------------------------------------------------------
    def sample(self) -> list[int]:
        ids = self.directory.client_ids
        k = min(self.clients_per_round, len(ids))
        return sorted(int(i) for i in self.rng.choice(ids, size=k, replace=False))

    def is_eval_round(self, server_round: int) -> bool:
        return server_round % self.eval_every == 0 or server_round == self.num_rounds

    def _messages(self, payloads: dict[int, ArrayRecord], config: ConfigRecord, kind: str) -> list[Message]:
        """One message per client, to that client's node; counts the bytes of arrays sent."""
        messages = []
        for cid, arrays in payloads.items():
            content = RecordDict({protocol.ARRAYS: arrays, protocol.CONFIG: config})
            messages.append(Message(content, dst_node_id=self.directory.node(cid), message_type=kind))
        key = f"{kind}_bytes_sent"
        self.round_metrics[key] = self.round_metrics.get(key, 0) + sum(a.count_bytes() for a in payloads.values())
        return messages

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.round_metrics, self.client_metrics = {}, []
        config[protocol.SERVER_ROUND] = server_round
        return self._messages(self.train_payloads(self.sample()), config, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if not self.is_eval_round(server_round):
            return []
        config[protocol.SERVER_ROUND] = server_round
        messages: list[Message] = []
        for ids in chunks(self.directory.client_ids, self.eval_chunk):
            messages += self._messages(self.eval_payloads(ids), config, MessageType.EVALUATE)
        return messages

    # --- replies ----------------------------------------------------------------------
    def replies_by_client(self, replies: Iterable[Message], is_train: bool) -> dict[int, RecordDict]:
        """Valid reply contents keyed by client id; a reply from the wrong node is dropped."""
        valid, _ = self._check_and_log_replies(replies, is_train=is_train)
        out: dict[int, RecordDict] = {}
        received = 0
        for msg in valid:
            cid = int(msg.content[protocol.METRICS][protocol.CLIENT_ID])
            if self.directory.node(cid) != msg.metadata.src_node_id:
                log.warning("dropping a reply for client %d from node %d", cid, msg.metadata.src_node_id)
                continue
            received += sum(r.count_bytes() for r in msg.content.array_records.values())
            out[cid] = msg.content
            self.client_metrics.append({"kind": "train" if is_train else "evaluate", **msg.content[protocol.METRICS]})
        kind = MessageType.TRAIN if is_train else MessageType.EVALUATE
        self.round_metrics[f"{kind}_bytes_received"] = received
        self.round_metrics[f"{kind}_client_compute_s"] = sum(
            float(c[protocol.METRICS].get(protocol.COMPUTE_SECONDS, 0.0)) for c in out.values()
        )
        return out

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Mean over clients of each client's accuracy on its own test split."""
        by_client = self.replies_by_client(replies, is_train=False)
        if not by_client:
            return None
        acc = {cid: float(c[protocol.METRICS][protocol.EVAL_ACCURACY]) for cid, c in by_client.items()}
        loss = {cid: float(c[protocol.METRICS][protocol.EVAL_LOSS]) for cid, c in by_client.items()}
        n = {cid: int(c[protocol.METRICS][protocol.NUM_EXAMPLES]) for cid, c in by_client.items()}
        self.accuracy.update(acc)
        total = sum(n.values())
        result = {
            "accuracy": float(np.mean(list(acc.values()))),
            "accuracy_weighted": sum(acc[c] * n[c] for c in acc) / total,
            "eval_loss": float(np.mean(list(loss.values()))),
            "eval_clients": len(acc),
        }
        self.round_metrics.update(result)
        return MetricRecord(result)

    def summary(self) -> None:
        log.info(
            "%s: %d clients, %d per round, evaluation every %d rounds",
            type(self).__name__,
            len(self.directory),
            self.clients_per_round,
            self.eval_every,
        )
