"""The launch's own Ray and client actors (simulations.ray_head), and how the simulation process takes them."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from flwr.simulation.ray_transport import ray_actor

from simulations import flwr_simulation, launch, ray_head
from simulations.flwr_simulation import hand_actors_to_flower, parse, ray_init_args, take_launch_ray, wait_for
from simulations.processes import LAUNCH_ENV, flower_env, new_launch_id, record_launch
from tests.launcher import processes_left


def test_the_head_file_is_written_whole_and_read_back(tmp_path):
    file = tmp_path / "ray_head"
    head = ray_head.Head("10.0.0.1:6379", "launch-1", ["client-actor-0", "client-actor-1"])
    head.write(file)

    assert ray_head.Head.read(file) == head
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ray_head"]  # the partial file was renamed, not left


class FakeActorClass:
    """``ClientAppActor`` as ``start_actors`` uses it: ``.options(**o).remote(**kw)``, recorded."""

    def __init__(self) -> None:
        self.created: list[tuple[dict, dict]] = []

    def options(self, **options):
        def remote(_, **kwargs):
            self.created.append((options, kwargs))
            return FakeActor(options["name"])

        return type("Options", (), {"remote": remote})()


class FakeActor:
    """An actor handle whose readiness is a string naming it."""

    def __init__(self, name: str) -> None:
        self.__ray_ready__ = type("Method", (), {"remote": lambda _: f"{name} ready"})()


def test_the_head_starts_as_many_client_actors_as_flowers_pool_would_each_importing_the_client_app(monkeypatch):
    fake = FakeActorClass()
    asked = []
    monkeypatch.setattr(ray_actor, "ClientAppActor", fake)
    monkeypatch.setattr(ray_actor, "pool_size_from_resources", lambda resources: asked.append(resources) or 3)
    monkeypatch.delitem(sys.modules, "json.tool", raising=False)
    awaited = []
    monkeypatch.setattr(ray, "get", lambda refs: awaited.extend(refs))

    names = ray_head.start_actors("json.tool", cpus=2.0, gpus=0.5)

    assert asked == [{"num_cpus": 2.0, "num_gpus": 0.5}]  # Flower's own count for these resources
    assert names == ["client-actor-0", "client-actor-1", "client-actor-2"]
    assert awaited == [f"{n} ready" for n in names]  # returned once every actor had started
    assert [o for o, _ in fake.created] == [
        {"name": n, "lifetime": "detached", "num_cpus": 2.0, "num_gpus": 0.5} for n in names
    ]
    on_start = fake.created[0][1]["on_actor_init_fn"]
    assert "json.tool" not in sys.modules
    on_start()  # what ClientAppActor.__init__ calls in the actor's worker
    assert "json.tool" in sys.modules


def test_flowers_pool_takes_the_launchs_actors_before_creating_its_own(monkeypatch):
    monkeypatch.setattr(ray_actor.BasicActorPool, "__init__", ray_actor.BasicActorPool.__init__)  # restored after
    monkeypatch.setattr(ray_actor, "pool_size_from_resources", lambda resources: 3)
    created = []

    class Flowers:  # stands for ClientAppActor: what Flower's pool would create
        @staticmethod
        def options(**options):
            return type("Options", (), {"remote": lambda _, **kw: created.append(options) or f"new-{len(created)}"})()

    hand_actors_to_flower(["launch-0", "launch-1"])
    pool = ray_actor.BasicActorPool(Flowers, {"num_cpus": 1, "num_gpus": 0.0}, {})
    pool.add_actors_to_pool(pool.actors_capacity)

    assert pool.pool == ["launch-0", "launch-1", "new-1"]  # Flower's own only beyond the launch's
    assert created == [{"num_cpus": 1, "num_gpus": 0.0}]


def test_the_heads_ray_gets_flowers_arguments_with_the_workers_path_in_its_environment(monkeypatch):
    """Flower's backend passes the workers' path as a runtime environment; the head puts the same path in
    the environment its raylet and workers inherit, and passes the rest as Flower does."""
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    flowers = ray_init_args()  # equal to Flower's own (tests/simulations/test_sweep.py)
    monkeypatch.setenv("PYTHONPATH", "/somewhere")

    assert {k: v for k, v in flowers.items() if k != "runtime_env"} == ray_head.flower_init_args()
    assert flowers["runtime_env"] == {"env_vars": {"PYTHONPATH": ray_head.worker_path()}}


def test_the_simulation_entry_connects_to_the_launchs_ray_only_when_it_has_one(tmp_path):
    with_head = launch.simulation_entry(tmp_path / "a", 0.005, tmp_path / "record", tmp_path / "head")
    without = launch.simulation_entry(tmp_path / "b", 0.005, tmp_path / "record", None)

    assert f"--ray-head {tmp_path / 'head'}" in with_head.read_text()
    assert "--ray-head" not in without.read_text()
    args, _ = parse(["--sweep-interval", "0", "--record", "r", "--ray-head", "h", "--", "x"])
    assert args.ray_head == Path("h")


DRIVER_IMPORTS = """
import builtins, json, sys, threading
from pathlib import Path
import ray
from simulations import flwr_simulation, ray_head
ray.init = lambda **_: None  # the head's Ray and its actor, stood in for
ray.get_actor = lambda name: name
file = Path(sys.argv[1])
ray_head.Head("127.0.0.1:1", "launch-1", ["client-actor-0"]).write(file)
imported, real = [], builtins.__import__
def watched(name, *args, **kwargs):
    if threading.current_thread().name == flwr_simulation.DRIVER_THREAD and name not in sys.modules:
        imported.append(name)
    return real(name, *args, **kwargs)
builtins.__import__ = watched
assert flwr_simulation.connect(file).wait(120)
print(json.dumps(sorted(imported)))
"""


def test_the_driver_thread_imports_nothing_of_flowers_beside_the_main_threads_imports(tmp_path):
    """Both threads importing Flower deadlocked Python's import locks now and then (``_DeadlockError``): the
    simulation process died before taking its task and the SuperLink started another 30 s later."""
    out = subprocess.run([sys.executable, "-c", DRIVER_IMPORTS, str(tmp_path / "head")], cwd=launch.APP_DIR,
                         capture_output=True, text=True, timeout=300)  # fmt: skip

    assert out.returncode == 0, out.stderr[-2000:]
    imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert not [name for name in imported if name.split(".")[0] in ("flwr", "ray")], imported


def test_the_launcher_names_the_apps_client_module_from_pyproject():
    module = launch.client_app_module()

    assert module == "clients.app"
    assert hasattr(importlib.import_module(module), "app")


class FakeHead:
    """A ``ray_head.Started`` that records what the launcher asked of it."""

    def __init__(self, launch_id: str = "early") -> None:
        self.launch_id, self.process = launch_id, object()
        self.orders: list[ray_head.Order] = []
        self.cancelled = False

    def order(self, order: ray_head.Order) -> None:
        self.orders.append(order)

    def cancel(self) -> None:
        self.cancelled = True


@pytest.mark.parametrize("cpus,gpus", [(1, 0.0), (2, 0.25)])
def test_a_head_started_before_the_config_is_ordered_the_runs_client_resources(tmp_path, monkeypatch, cpus, gpus):
    monkeypatch.setattr(ray_head, "start", lambda *a: pytest.fail("a second head was started"))
    spec = launch.SimulationSpec(tmp_path, num_supernodes=4, sweep_interval=0.005, client_cpus=cpus, client_gpus=gpus)
    early = FakeHead()

    head = launch.ordered_head(early, tmp_path / "head", spec, "early", {"FLWR_HOME": "/runs/a/.flwr"})

    assert head is early and not early.cancelled
    assert early.orders == [ray_head.Order(str(tmp_path / "head"), "clients.app", cpus, gpus)]


def test_without_an_early_head_one_is_started_in_the_launchs_namespace_and_environment(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(
        ray_head, "start", lambda launch_id, env: started.append((launch_id, env)) or FakeHead(launch_id)
    )
    spec = launch.SimulationSpec(tmp_path, num_supernodes=4, sweep_interval=0.005)

    env = {"FLWR_HOME": "/runs/a/.flwr", "X": "1"}
    head = launch.ordered_head(None, tmp_path / "head", spec, "n1", env)

    assert started == [("n1", env)]
    assert head.orders == [ray_head.Order(str(tmp_path / "head"), "clients.app", 1, 0.0)]


def test_a_run_on_another_ray_cancels_the_early_head_and_starts_none(tmp_path, monkeypatch):
    monkeypatch.setattr(ray_head, "start", lambda *a: pytest.fail("a head was started"))
    spec = launch.SimulationSpec(tmp_path, num_supernodes=4, sweep_interval=0.005, ray_address="auto")
    early = FakeHead()

    assert launch.ordered_head(early, None, spec, "early", {}) is None
    assert early.cancelled and not early.orders
    assert launch.ordered_head(None, None, spec, "n1", {}) is None


@pytest.mark.parametrize(
    ("argv", "early"),
    [
        ([], True),
        (["strategy=fedavg", "sim.num_rounds=3", "hydra.run.dir=/tmp/x"], True),
        (["sim.ray_address=local", "resume=/tmp/run"], True),
        (["sim.ray_address=auto"], False),  # another Ray
        (["+sim.ray_address=10.0.0.1:6379"], False),
        (["--multirun", "seed=0,1"], False),  # one launch per job
        (["-m", "seed=0,1"], False),
        (["hydra.mode=MULTIRUN"], False),
        (["--help"], False),  # no launch at all
        (["--cfg", "job"], False),
    ],
)
def test_the_launcher_starts_its_ray_before_the_config_only_when_the_command_line_allows_one(monkeypatch, argv, early):
    monkeypatch.setattr(ray_head, "start", lambda launch_id, env: FakeHead(launch_id))

    head = ray_head.start_before_config(argv, "l1")

    assert (head is not None) == early


def test_the_early_head_is_marked_as_the_launchs_and_never_attaches_to_another_ray(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    started = []
    monkeypatch.setattr(ray_head, "start", lambda launch_id, env: started.append(env) or FakeHead(launch_id))

    ray_head.start_before_config([], "l1")

    ((env,),) = [started]
    assert env[launch.LAUNCH_ENV] == "l1" and env["RAY_ADDRESS"] == "local" and "FLWR_HOME" not in env


def test_an_order_goes_as_one_line_and_the_end_of_input_means_none(tmp_path):
    order = ray_head.Order(str(tmp_path / "head"), "clients.app", 2, 0.5)

    assert ray_head.Order.read(io.StringIO(order.line())) == order
    assert order.line().count("\n") == 1
    assert ray_head.Order.read(io.StringIO("")) is None


def test_a_head_that_failed_says_so_and_the_simulation_stops_waiting_at_once(tmp_path):
    file = tmp_path / "ray_head"
    ray_head.Head("", "n", [], error="RuntimeError: no Ray").write(file)

    with pytest.raises(RuntimeError, match="simulations.ray_head failed: RuntimeError: no Ray"):
        wait_for(file, timeout=0.01)
    ray_head.Head("127.0.0.1:1", "n", ["a"]).write(file)
    assert wait_for(file).actors == ["a"]
    with pytest.raises(TimeoutError):
        wait_for(tmp_path / "never", timeout=0.05)


def test_the_simulation_waits_for_a_head_while_it_runs_and_not_once_it_is_gone(tmp_path):
    launch_id = new_launch_id()
    env = {**os.environ, LAUNCH_ENV: launch_id}
    head = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "simulations.ray_head"], env=env)
    try:
        assert ray_head.running(launch_id) and not ray_head.running(new_launch_id())
        with pytest.raises(TimeoutError):  # alive: waited for until the deadline
            wait_for(tmp_path / "never", lambda: ray_head.running(launch_id), timeout=1.5)
    finally:
        head.kill()
        head.wait()
    assert not ray_head.running(launch_id)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="simulations.ray_head is gone and wrote nothing"):
        wait_for(tmp_path / "never", lambda: ray_head.running(launch_id), timeout=60)
    assert time.monotonic() - start < 5


def test_a_failed_actor_look_up_leaves_ray_shut_down_so_flower_starts_its_own(tmp_path, monkeypatch):
    file = tmp_path / "ray_head"
    ray_head.Head("127.0.0.1:1", "launch-1", ["client-actor-0"]).write(file)
    calls, handed = [], []
    monkeypatch.setattr(ray, "init", lambda address, namespace, **_: calls.append(("init", address, namespace)))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append(("shutdown",)))
    monkeypatch.setattr(flwr_simulation, "hand_actors_to_flower", handed.extend)

    monkeypatch.setattr(ray, "get_actor", lambda name: f"handle of {name}")
    assert take_launch_ray(file)
    assert calls == [("init", "127.0.0.1:1", "launch-1")] and handed == ["handle of client-actor-0"]

    def not_found(name):
        raise ValueError(f"Failed to look up actor with name '{name}'")

    calls.clear()
    monkeypatch.setattr(ray, "get_actor", not_found)
    assert not take_launch_ray(file)
    assert calls == [("init", "127.0.0.1:1", "launch-1"), ("shutdown",)]  # not left on the head's Ray
    assert handed == ["handle of client-actor-0"]  # nothing more handed to Flower


def test_a_head_whose_input_ends_without_an_order_shuts_its_ray_down_and_exits(tmp_path):
    launch_id = new_launch_id()
    record_launch(tmp_path / ".flwr", launch_id)  # as run_app records its launch: Ray's processes carry only the id
    head = subprocess.run([sys.executable, "-m", "simulations.ray_head", "--namespace", launch_id], input="",
                          env=flower_env(None, "local", launch_id), cwd=launch.APP_DIR, capture_output=True,
                          text=True, timeout=120)  # fmt: skip

    assert head.returncode == 0, head.stderr
    assert processes_left(tmp_path, timeout=10) == []  # nothing of its Ray left


def test_a_head_gone_before_its_order_is_said_in_its_file_so_the_simulation_starts_ray_at_once(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], stdin=subprocess.PIPE, text=True)
    gone.wait()
    head = ray_head.Started("l1", gone)

    head.order(ray_head.Order(str(tmp_path / "head"), "clients.app", 1, 0.0))

    with pytest.raises(RuntimeError, match=r"simulations.ray_head exited \(3\) before its order"):
        wait_for(tmp_path / "head", timeout=0.01)
