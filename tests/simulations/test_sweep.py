"""fedhyper's message sweep hands simulated clients what Flower's own sweep would."""

import threading
from queue import Queue

import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.proto.task_pb2 import Task
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.grid import InMemoryGrid

from simulations import sweep


class OneSweep(threading.Event):
    """A stop event that ends a sweep loop after its first pass."""

    def wait(self, timeout=None):
        self.set()
        return True


def store_with_messages(destinations: list[int]):
    """Flower's simulation set-up: an in-memory store, 6 nodes, one run, messages to ``destinations`` (indices)."""
    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
    state = factory.state()
    run = Run.create_empty(run_id=7)
    run.primary_task_id, run.federation_id = 11, NOOP_FEDERATION_ID
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 7, SUPERLINK_NODE_ID
    state.run_ids[run.run_id] = RunRecord(run=run)
    state.task_store[11] = Task(task_id=11, run_id=7)
    nodes = vce_api._register_nodes(6, factory)
    grid = InMemoryGrid(factory)
    grid.set_run(run)
    ids = list(nodes)
    grid.push_messages(
        [Message(RecordDict({"c": ConfigRecord({"i": k})}), dst_node_id=ids[d], message_type="train")
         for k, d in enumerate(destinations)]
    )  # fmt: skip
    return state, nodes


def handed_over(sweep_fn, destinations):
    state, nodes = store_with_messages(destinations)
    queue: Queue = Queue()
    sweep_fn(state, queue, nodes, OneSweep())
    first = sorted(int(m.content["c"]["i"]) for m in list(queue.queue))
    stored = state.message_ins_store.values()
    undelivered = sorted(int(m.content["c"]["i"]) for m in stored if not m.metadata.delivered_at)
    return first, undelivered


@pytest.mark.parametrize("destinations", [[0, 2, 5], [1, 1, 3, 4, 4, 4], []])
def test_one_sweep_hands_over_one_message_per_node_as_flowers_does(destinations):
    flower = handed_over(sweep._flower_sweep or vce_api.add_messages_to_queue, destinations)
    ours = handed_over(sweep.pending_sweep, destinations)

    assert ours == flower
    # Each node's first message now (by push order), the rest in later sweeps.
    assert ours[0] == sorted(destinations.index(d) for d in set(destinations))


def test_install_needs_flowers_engine_and_a_nonzero_interval(monkeypatch):
    # Importing the ServerApp in this test process (other tests do) may have installed the sweep
    # already: start from Flower's own function, and restore whatever was there afterwards.
    flowers = sweep._flower_sweep or vce_api.add_messages_to_queue
    monkeypatch.setattr(vce_api, "add_messages_to_queue", flowers)
    monkeypatch.setattr(sweep, "_flower_sweep", None)

    monkeypatch.setenv(sweep.ENV_INTERVAL, "0")
    assert not sweep.install() and vce_api.add_messages_to_queue is flowers
    monkeypatch.setenv(sweep.ENV_INTERVAL, "0.005")
    assert sweep.install() and vce_api.add_messages_to_queue is sweep.pending_sweep
    assert sweep._flower_sweep is flowers
