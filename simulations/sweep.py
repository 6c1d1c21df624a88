"""A faster hand-over of messages to simulated clients, for Flower 1.42's simulation engine.

Flower's engine moves messages from its in-memory store to the clients' queue in sweeps 0.1 s
apart (``vce_api.add_messages_to_queue``): each sweep asks the store once per node for that
node's next message, and each such ask scans every stored message. A message therefore waits
0-100 ms before any client sees it (on a round of 10 clients x 4 local steps, 0.45 s in one
process, that is a tenth of the round), and a sweep costs nodes x stored messages: at 10,000
nodes with an evaluation's messages in the store, seconds a sweep.

``pending_sweep`` hands over the same messages by the same rules (at most one per node per
sweep, expired ones dropped first, each marked delivered) in one pass over the store, every
``FEDHYPER_SWEEP_INTERVAL`` seconds (default 0.005; ``0`` keeps Flower's own sweep).
``install`` puts it in place of Flower's when the ServerApp is imported inside Flower's
simulation process, which imports the engine before it loads the app and starts its sweep
thread only after Ray is up. It relies on the in-memory store's layout in Flower 1.42
(``message_ins_store``, ``lock``, ``_check_stored_messages``); with any other Flower version, a
store of another kind, or an app loaded after the sweep started, Flower's sweep runs unchanged.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from queue import Queue
from typing import Any

import flwr
from flwr.supercore.date import now

log = logging.getLogger("fedhyper")

ENGINE_MODULE = "flwr.server.superlink.fleet.vce.vce_api"
ENV_INTERVAL = "FEDHYPER_SWEEP_INTERVAL"
DEFAULT_INTERVAL = 0.005
SUPPORTED_FLWR = ("1.42.",)

in_use = threading.Event()  # set once this sweep has started in this process
_flower_sweep = None  # Flower's own function, kept by install() for stores this sweep cannot read


def interval() -> float:
    """Seconds between sweeps from ``FEDHYPER_SWEEP_INTERVAL``; 0 means Flower's own sweep."""
    value = float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL))
    if value < 0:
        raise ValueError(f"{ENV_INTERVAL}={value} must be >= 0 (0: Flower's own sweep)")
    return value


def take_pending(state: Any, nodes: set[int]) -> list[Any]:
    """The next undelivered message of each node in ``nodes``, marked delivered; expired ones dropped."""
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


def pending_sweep(state: Any, queue: Queue, nodes_mapping: dict[int, int], f_stop: threading.Event) -> None:
    """Drop-in for ``vce_api.add_messages_to_queue``: one pass over the store every ``interval()`` s."""
    if not _store_has_layout(state):
        log.warning("message store %s is not Flower 1.42's in-memory one: Flower's own sweep runs", type(state))
        return _flower_sweep(state, queue, nodes_mapping, f_stop)
    in_use.set()
    nodes, wait = set(nodes_mapping), interval()
    while not f_stop.is_set():
        for msg in take_pending(state, nodes):
            queue.put(msg)
        f_stop.wait(wait)
    return None


def _store_has_layout(state: Any) -> bool:
    return all(hasattr(state, name) for name in ("lock", "message_ins_store", "_check_stored_messages"))


def install() -> bool:
    """Put ``pending_sweep`` in place of Flower's sweep; True when it is in place (or already was)."""
    global _flower_sweep
    engine = sys.modules.get(ENGINE_MODULE)  # imported by Flower's simulation process only
    if engine is None or interval() == 0 or not flwr.__version__.startswith(SUPPORTED_FLWR):
        return False
    current = getattr(engine, "add_messages_to_queue", None)
    if current is pending_sweep:
        return True
    if current is None:
        return False
    _flower_sweep = current
    engine.add_messages_to_queue = pending_sweep
    return True
