"""fedhyper's message sweep hands simulated clients what Flower's own sweep would, installed by the launcher only."""

import subprocess
import sys
import threading
from pathlib import Path
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
from simulations.flwr_simulation import parse, ray_init_args

REPO = Path(__file__).resolve().parents[2]
FLOWERS = vce_api.add_messages_to_queue  # nothing installs a sweep in the test process: no test runs the wrapper here


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


@pytest.fixture
def installed(monkeypatch):
    """Install into this process's engine; Flower's function is put back afterwards."""
    monkeypatch.setattr(vce_api, "add_messages_to_queue", FLOWERS)
    started = []
    yield lambda interval: sweep.install(interval, on_start=lambda: started.append(True)), started


@pytest.mark.parametrize("destinations", [[0, 2, 5], [1, 1, 3, 4, 4, 4], []])
def test_one_sweep_hands_over_one_message_per_node_as_flowers_does(installed, destinations):
    install, started = installed
    ours = install(0.005)

    result = handed_over(vce_api.add_messages_to_queue, destinations)

    assert ours is vce_api.add_messages_to_queue and ours.flower_sweep is FLOWERS
    assert started == [True]  # it ran, not Flower's in its place
    assert result == handed_over(FLOWERS, destinations)
    # Each node's first message now (by push order), the rest in later sweeps.
    assert result[0] == sorted(destinations.index(d) for d in set(destinations))


def test_a_zero_interval_keeps_flowers_sweep_and_a_store_of_another_type_runs_flowers(installed):
    install, started = installed
    assert install(0) is None and vce_api.add_messages_to_queue is FLOWERS
    with pytest.raises(ValueError, match="sim.sweep_interval"):
        install(-1)

    ours = install(0.005)
    seen = []
    ours.flower_sweep = lambda *args: seen.append(args[0])
    ours(object(), Queue(), {}, OneSweep())

    assert len(seen) == 1 and started == []  # Flower's sweep got the foreign store; ours never started


def test_the_wrapper_splits_its_options_from_flowers():
    args, flowers = parse(["--sweep-interval", "0.01", "--record", "/r/f", "--", "--insecure", "--token", "t"])

    assert args.sweep_interval == 0.01 and args.record == Path("/r/f") and args.ray_head is None
    assert flowers == ["--insecure", "--token", "t"]


def test_the_simulation_process_connects_to_ray_with_what_flowers_backend_would_give_it(monkeypatch):
    """The arguments of its ``ray.init`` equal those Flower 1.42's Ray backend passes for the launcher's runs.

    Flower's backend config for a federation that sets no ``init-args`` (the launcher's): its
    ``flwr-simulation`` fills in the defaults of ``DEFAULT_SIMULATION_CONFIG``.
    """
    import ray
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend
    from flwr.supercore.constant import DEFAULT_SIMULATION_CONFIG as defaults

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    init_args = {"logging_level": defaults.init_args_logging_level, "log_to_driver": defaults.init_args_log_to_driver}
    backend = RayBackend.__new__(RayBackend)  # no __init__: it would start Ray
    backend.init_args_key = "init_args"  # what RayBackend.__init__ sets
    backend.init_ray({"init_args": init_args})
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    calls.append(ray_init_args())

    assert calls[0] == calls[1]


def test_importing_the_server_app_installs_nothing_and_imports_no_simulations_module():
    # A fresh interpreter: what a deployment's ServerApp process sees, whatever this session imported.
    probe = (
        "import sys, strategies.app; from flwr.server.superlink.fleet.vce import vce_api; "
        "print(vce_api.add_messages_to_queue.__module__, sorted(m for m in sys.modules if m.startswith('simulations')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split(maxsplit=1) == [vce_api.__name__, "[]\n"]
