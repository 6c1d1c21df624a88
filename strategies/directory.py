"""Which node is which client: stable client ids mapped to transport node ids.

Node ids are chosen by the transport and change between runs; a client's id (its
partition id) does not. The server asks every node once, with a QUERY message, and from
then on addresses clients by their id.
"""

from __future__ import annotations

import logging
import time

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedhyper import protocol
from strategies.transport import send_and_receive

log = logging.getLogger(__name__)


class ClientDirectory:
    """Client id -> node id, and what each client reported about itself."""

    def __init__(self) -> None:
        self._node_of: dict[int, int] = {}
        self._client_of: dict[int, int] | None = None
        self.num_train_examples: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._node_of)

    @property
    def client_ids(self) -> list[int]:
        return sorted(self._node_of)

    def node(self, cid: int) -> int:
        return self._node_of[cid]

    def client_of(self, node_id: int) -> int | None:
        """The client id a node reported, or None for a node that never described itself."""
        if self._client_of is None or len(self._client_of) != len(self._node_of):
            self._client_of = {n: c for c, n in self._node_of.items()}
        return self._client_of.get(node_id)

    def register(self, cid: int, node_id: int, num_train_examples: int) -> None:
        known = self._node_of.get(cid)
        if known is not None and known != node_id:
            raise ValueError(
                f"nodes {known} and {node_id} both claim client id {cid}; give each a distinct partition-id"
            )
        self._node_of[cid] = node_id
        self._client_of = None
        self.num_train_examples[cid] = num_train_examples

    def discover(self, grid: Grid, config: ConfigRecord, expected: int, timeout: float) -> None:
        """Wait for ``expected`` nodes (at most ``timeout`` s) and learn the client id of each new one."""
        deadline = time.monotonic() + timeout
        while len(list(grid.get_node_ids())) < expected and time.monotonic() < deadline:
            time.sleep(1.0)
        known = set(self._node_of.values())
        new_nodes = [n for n in grid.get_node_ids() if n not in known]
        messages = [
            Message(RecordDict({protocol.CONFIG: config}), dst_node_id=n, message_type=MessageType.QUERY)
            for n in new_nodes
        ]
        for reply in send_and_receive(grid, messages, timeout):
            if reply.has_error():
                log.warning("node %d did not describe itself: %s", reply.metadata.src_node_id, reply.error.reason)
                continue
            info = reply.content[protocol.METRICS]
            self.register(
                int(info[protocol.CLIENT_ID]), reply.metadata.src_node_id, int(info[protocol.NUM_TRAIN_EXAMPLES])
            )
        log.info("client directory: %d clients on %d nodes", len(self), len(list(grid.get_node_ids())))
