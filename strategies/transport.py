"""Messages out to the clients and their replies back, on any Flower grid."""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

# How often a deployment's ServerApp asks its SuperLink for replies; Flower's own send_and_receive
# sleeps 3 s between asks, which a round's every exchange waited out. The simulation's in-memory
# grid has its own interval (sim.poll_interval, set when the run connects) and is left to it.
SUPERLINK_POLL_S = 0.2


def send_and_receive(grid: Grid, messages: Iterable[Message], timeout: float) -> list[Message]:
    """``grid.send_and_receive``, asking a SuperLink for replies every ``SUPERLINK_POLL_S``."""
    if hasattr(grid, "pull_interval") or not hasattr(grid, "push_messages"):  # in-memory, or in-process
        return list(grid.send_and_receive(messages, timeout=timeout))
    waiting = set(grid.push_messages(messages))
    deadline = time.monotonic() + timeout
    replies: list[Message] = []
    while waiting:
        pulled = list(grid.pull_messages(waiting))
        replies += pulled
        waiting -= {m.metadata.reply_to_message_id for m in pulled}
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(SUPERLINK_POLL_S)
    return replies
