"""A faster hand-over of messages to simulated clients, for Flower 1.42's simulation engine.

Flower's engine moves messages from its in-memory store to the clients' queue in sweeps 0.1 s
apart (``vce_api.add_messages_to_queue``): each sweep asks the store once per node for that
node's next message, and each such ask scans every stored message. A message therefore waits
0-100 ms before any client sees it (on a round of 10 clients x 4 local steps, 0.45 s in one
process, that is a tenth of the round), and a sweep costs nodes x stored messages: at 10,000
nodes with an evaluation's messages in the store, seconds a sweep.

``PendingSweep`` hands over the same messages by the same rules (at most one per node per
sweep, expired ones dropped first, each marked delivered) in one pass over the store, every
``sim.sweep_interval`` seconds. Only the process that runs Flower's simulation installs it:
``simulations.flwr_simulation``, the entry point the launcher starts in place of Flower's
``flwr-simulation``. It relies on the in-memory store's layout in Flower 1.42
(``message_ins_store``, ``lock``, ``_check_stored_messages``); with any other Flower version
nothing is installed, and with a store of another type Flower's own sweep runs.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from queue import Queue
from typing import Any

import flwr

log = logging.getLogger("fedhyper")

ENGINE_MODULE = "flwr.server.superlink.fleet.vce.vce_api"
STORE_MODULE = "flwr.server.superlink.linkstate.in_memory_linkstate"
SUPPORTED_FLWR = ("1.42.",)
STORE_LAYOUT = ("lock", "message_ins_store", "_check_stored_messages")  # what take_pending reads
# summary.json's message_sweep: who handed messages to the simulated clients.
FEDHYPER, FLOWER = "fedhyper", "flower"


def take_pending(state: Any, nodes: set[int]) -> list[Any]:
    """The next undelivered message of each node in ``nodes``, marked delivered; expired ones dropped."""
    from flwr.supercore.date import now  # Flower's clock, as its own store stamps deliveries

    with state.lock:
        state._check_stored_messages(set(state.message_ins_store))  # Flower's own expiry rules
        taken: dict[int, Any] = {}
        for msg in state.message_ins_store.values():
            node = msg.metadata.dst_node_id
            if msg.metadata.delivered_at == "" and node in nodes and node not in taken:
                taken[node] = msg
        stamp = now().isoformat()
        for msg in taken.values():
            msg.metadata.delivered_at = stamp
    return list(taken.values())


@dataclass
class PendingSweep:
    """Drop-in for ``vce_api.add_messages_to_queue``: one pass over the store every ``interval`` s.

    ``on_start`` runs once this sweep (not Flower's) starts handing messages over.
    """

    interval: float
    store_type: type  # the store whose layout take_pending reads
    flower_sweep: Callable[..., None]  # Flower's own function, for any other store
    on_start: Callable[[], None]

    def __call__(self, state: Any, queue: Queue, nodes_mapping: dict[int, int], f_stop: threading.Event) -> None:
        if not (isinstance(state, self.store_type) and all(hasattr(state, a) for a in STORE_LAYOUT)):
            log.warning("message store %s is not Flower 1.42's in-memory one: Flower's own sweep runs", type(state))
            return self.flower_sweep(state, queue, nodes_mapping, f_stop)
        self.on_start()
        nodes = set(nodes_mapping)
        while not f_stop.is_set():
            for msg in take_pending(state, nodes):
                queue.put(msg)
            f_stop.wait(self.interval)
        return None


def install(interval: float, on_start: Callable[[], None] = lambda: None) -> PendingSweep | None:
    """Put a ``PendingSweep`` in place of Flower's sweep in this process; None where Flower's stays.

    Flower's stays with ``interval`` 0, with a Flower other than 1.42, or when its engine lacks
    the function or its store the layout this sweep reads.
    """
    if interval < 0:
        raise ValueError(f"sim.sweep_interval={interval} must be >= 0 (0: Flower's own sweep)")
    if interval == 0 or not flwr.__version__.startswith(SUPPORTED_FLWR):
        return None
    engine = importlib.import_module(ENGINE_MODULE)
    store_type = getattr(importlib.import_module(STORE_MODULE), "InMemoryLinkState", None)
    current = getattr(engine, "add_messages_to_queue", None)
    if current is None or not hasattr(store_type, "_check_stored_messages"):
        log.warning("Flower %s's engine is not laid out as 1.42's: its own sweep runs", flwr.__version__)
        return None
    if isinstance(current, PendingSweep):
        raise RuntimeError("fedhyper's message sweep is installed already in this process")
    engine.add_messages_to_queue = PendingSweep(interval, store_type, current, on_start)
    return engine.add_messages_to_queue
