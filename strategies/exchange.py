"""Messaging a round's clients: one message per client out, the checked replies back, traffic counted.

The round loop hands an algorithm an ``Exchange`` for each phase (train, evaluate). ``ask`` sends
each client its content with the round's config, keeps the replies that pass the given check (in
client-id order) and adds bytes sent and received, client compute time and rejections to the
round's ``RoundMetrics``. An algorithm that needs more than the train message (PeFLL asks for
descriptors and ψ-gradients) asks through the same object: it never holds the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedhyper import protocol, record
from strategies.directory import ClientDirectory
from strategies.replies import Check, Reply, ReplySorter
from strategies.transport import send_and_receive


@dataclass
class RoundMetrics:
    """What a round reports: its metrics row (without round and time) and every valid reply's metrics."""

    values: dict[str, float] = field(default_factory=dict)
    clients: list[dict[str, Any]] = field(default_factory=list)

    def add(self, key: str, value: float) -> None:
        """Add to a count that several exchanges (or evaluation chunks) of the round contribute to."""
        self.values[key] = self.values.get(key, 0) + value


def arrays_of(content: RecordDict) -> int:
    """Bytes of the arrays a message's content holds."""
    return sum(r.count_bytes() for r in content.array_records.values())


class Exchange:
    """One phase of one round: ``ask`` the clients, get their usable replies.

    ``orders`` add per-client config entries to this phase's train messages (fault injection);
    other kinds of message go out with the plain config.
    """

    def __init__(
        self,
        grid: Grid,
        directory: ClientDirectory,
        replies: ReplySorter,
        timeout: float,
        server_round: int,
        phase: str,
        config: ConfigRecord,
        metrics: RoundMetrics,
        orders: dict[int, dict[str, Any]] | None = None,
    ) -> None:
        self.grid, self.directory, self.replies, self.timeout = grid, directory, replies, timeout
        self.server_round, self.phase, self.config, self.metrics = server_round, phase, config, metrics
        self.orders = orders or {}

    def _config(self, cid: int, kind: str) -> ConfigRecord:
        if kind != MessageType.TRAIN or cid not in self.orders:
            return self.config
        return ConfigRecord({**self.config, **self.orders[cid]})

    def ask(self, kind: str, contents: dict[int, dict[str, ArrayRecord]], check: Check) -> dict[int, Reply]:
        """Send each client of ``contents`` its array records (and the config) as a ``kind`` message.

        Returns the replies that pass ``check``, by client id in client-id order; a client that
        answers badly or not at all is counted as rejected under this exchange's name.
        """
        messages = [
            Message(
                RecordDict({**arrays, protocol.CONFIG: self._config(cid, kind)}),
                dst_node_id=self.directory.node(cid),
                message_type=kind,
            )
            for cid, arrays in contents.items()
        ]
        name = self.phase if kind == self.phase else f"{self.phase}_{kind.removeprefix('query.')}"
        self.metrics.add(record.traffic_key(name, "bytes_sent"), sum(arrays_of(m.content) for m in messages))
        replies = send_and_receive(self.grid, messages, self.timeout)
        valid = self.replies.sort(self.server_round, replies, list(contents), check)
        counts = {
            "bytes_received": sum(arrays_of(v.content) for v in valid.values()),
            "client_compute_s": sum(float(v.metrics.get(protocol.COMPUTE_SECONDS, 0.0)) for v in valid.values()),
            "rejected": len(contents) - len(valid),
        }
        for what, value in counts.items():
            self.metrics.add(record.traffic_key(name, what), value)
        self.metrics.clients += [{record.CLIENT_KIND: kind, **v.metrics} for v in valid.values()]
        return valid
