"""The launch's private Ray instance and its client actors, started before anything else of the launch.

``python -m simulations.ray_head --namespace NS``, then one order on its standard input

Flower starts Ray, and then one actor a client slot, only once the SuperLink, the SuperExec and
its simulation process are up and that process has loaded the ServerApp and the ClientApp; each
actor then starts a Python worker that imports Flower, torch and the ClientApp again. On 2 cores
that was most of a 50-client simulation's 18 s before its first round. The launcher
(``python -m simulations.run``) starts this process instead as its very first step, before it
imports torch and composes the config (about 1.5 s of one core, while the other is idle). It

1. imports Ray (about 0.5 s) and, in a thread, Flower's actor module;
2. starts a local Ray at once (``ray.init()`` on free ports, with the arguments Flower's backend
   would give it; about 3 s) in a namespace of the launch's own. The run's folder is not known
   yet, so Ray's processes carry the launch's id and not ``FLWR_HOME``: the launch records its
   id in the folder (``processes.record_launch``), where observers look it up;
3. reads one order from its standard input (``Order``, a JSON line): where to write, the
   ClientApp's module and each client's CPUs and GPUs, which the launcher knows once the config
   is composed. If the input ends first (the run wants another Ray, its config was refused, the
   launcher is gone), it shuts its Ray down and exits;
4. creates Flower's own client actor (``ClientAppActor``) as many times as Flower would (one per
   ``C`` CPUs and ``G`` GPUs of the cluster), as named detached actors that import the ClientApp
   as they start, and waits until every one has started: a driver that looked an actor up by
   name while it was still being created waited about 30 s for its first reply (2 of 4 runs
   when Ray was started before the config, and so up before the simulation process);
5. writes the Ray address, the namespace and the actors' names to the order's file (JSON), and
   holds the instance until it is stopped (SIGTERM, SIGINT), or until its launcher and the
   launch's ServerApp are gone.

The simulation process (``simulations.flwr_simulation --ray-head FILE``) connects to that
address as a second driver, as it would to a cluster given by ``sim.ray_address``, and Flower's
actor pool takes these actors instead of creating its own: by then their workers have started
and imported the ClientApp. Every Ray process inherits this one's environment, so the launch's
marker reaches them and the launcher stops them with the rest of the launch.

Only the standard library is imported here before ``main`` runs: the launcher imports this
module before anything heavy.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from simulations.processes import alive, flower_env, launch_processes, server_processes

ACTOR_MODULE = "flwr.simulation.ray_transport.ray_actor"  # Flower's client actor and its pool


@dataclass
class Head:
    """What ``FILE`` holds: where the launch's Ray is and the client actors it started."""

    address: str  # Ray's GCS, host:port
    namespace: str  # the actors' namespace
    actors: list[str]  # their names, one per client slot
    error: str | None = None  # why the head could not start them: the simulation then starts Ray itself

    def write(self, file: Path) -> None:
        partial = file.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self)))
        partial.replace(file)  # a reader sees all of it or nothing

    @classmethod
    def failed(cls, namespace: str, error: str) -> Head:
        """A head that could not start its Ray or actors: the simulation then starts Ray itself at once."""
        return cls("", namespace, [], error=error)

    @classmethod
    def read(cls, file: Path) -> Head:
        return cls(**json.loads(file.read_text()))


def worker_path() -> str:
    """The ``PYTHONPATH`` Flower's Ray backend gives its workers: the driver's ``sys.path``, then the variable.

    Put in this process's environment, which the raylet and every worker inherit, so that no job
    needs a runtime environment for it.
    """
    path = os.pathsep.join(sys.path)
    return f"{path}{os.pathsep}{os.environ['PYTHONPATH']}" if os.environ.get("PYTHONPATH") else path


def flower_init_args() -> dict:
    """What Flower 1.42's Ray backend passes to ``ray.init`` besides the workers' path.

    The launcher sets no ``init-args`` in its federation config, so Flower's defaults apply
    (``flwr.supercore.constant.DEFAULT_SIMULATION_CONFIG``).
    """
    from flwr.supercore.constant import DEFAULT_SIMULATION_CONFIG as defaults

    return {
        "include_dashboard": False,
        "logging_level": defaults.init_args_logging_level,
        "log_to_driver": defaults.init_args_log_to_driver,
    }


@dataclass
class Order:
    """What the launcher tells its head once the run's config is known: one JSON line on its input."""

    file: str  # where to write the Head
    client_app: str  # the ClientApp's module, which each actor imports as it starts
    cpus: float  # sim.client_cpus
    gpus: float  # sim.client_gpus

    def line(self) -> str:
        return json.dumps(asdict(self)) + "\n"

    @classmethod
    def read(cls, stream: TextIO) -> Order | None:
        """The order, or None when the input ended without one."""
        line = stream.readline()
        return cls(**json.loads(line)) if line.strip() else None


@dataclass
class Started:
    """A head process of launch ``launch_id``: it imports Ray, then starts it and its actors on ``order``."""

    launch_id: str
    process: subprocess.Popen

    def order(self, order: Order) -> None:
        """Send ``order`` (the only one: the head then holds Ray until it is stopped).

        A head that has already exited gets it said in the order's file, so that the simulation
        starts Ray itself at once instead of waiting for an address.
        """
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(order.line())
            self.process.stdin.close()
        except BrokenPipeError:
            code = self.process.wait()
            Head.failed(self.launch_id, f"simulations.ray_head exited ({code}) before its order").write(
                Path(order.file)
            )

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the head to shut its Ray down, and wait for it (the launcher's ``stop_marked`` ends what is left)."""
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)

    def cancel(self) -> None:
        """No order: the head's input ends, and it shuts its Ray down and exits."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()


def running(launch_id: str) -> bool:
    """Whether the head of launch ``launch_id`` is alive (it carries the launch's mark)."""
    for pid in launch_processes(launch_id):
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"simulations.ray_head" in words and alive(pid):
            return True
    return False


def start(launch_id: str, env: dict[str, str]) -> Started:
    """Start ``python -m simulations.ray_head`` for launch ``launch_id`` (its Ray namespace) with ``env``."""
    cmd = [sys.executable, "-m", "simulations.ray_head", "--namespace", launch_id]
    process = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, text=True, start_new_session=True)
    return Started(launch_id, process)


# Launcher options after which the config may not want this Ray: a Hydra flag (--help, --cfg,
# --multirun, ...), a multirun by config, or another Ray. The config decides in the end (run_app).
NOT_BEFORE_CONFIG = ("-", "hydra.mode=", "sim.ray_address=")


def start_before_config(argv: list[str], launch_id: str) -> Started | None:
    """A head for a launch with ``argv``, started before its config is composed; None when it may not be wanted."""
    if any(arg.lstrip("+~").startswith(NOT_BEFORE_CONFIG) for arg in argv if arg != "sim.ray_address=local"):
        return None
    return start(launch_id, flower_env(None, ray_address="local", launch_id=launch_id))


def import_client_app(module: str) -> None:
    """A client actor's start: import the ClientApp's module, so that its first message finds it loaded."""
    importlib.import_module(module)


def start_actors(module: str, cpus: float, gpus: float) -> list[str]:
    """Flower's client actors, as many as its pool would create, named and detached, once all have started."""
    import ray

    ray_actor = importlib.import_module(ACTOR_MODULE)
    resources = {"num_cpus": cpus, "num_gpus": gpus}
    names = [f"client-actor-{i}" for i in range(ray_actor.pool_size_from_resources(resources))]
    on_start = functools.partial(import_client_app, module)
    actors = [
        ray_actor.ClientAppActor.options(name=name, lifetime="detached", **resources).remote(on_actor_init_fn=on_start)
        for name in names
    ]
    ray.get([actor.__ray_ready__.remote() for actor in actors])  # each has run __init__: imported the ClientApp
    return names


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulations.ray_head", description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="fedhyper", help="Ray namespace of the actors")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse(argv)
    launcher = os.getppid()
    os.environ["PYTHONPATH"] = worker_path()
    # Ray starts while the launcher composes the config; Flower's actor module (about 1.5 s of one
    # core to import) is needed only once the order has come.
    actor_module = threading.Thread(target=importlib.import_module, args=(ACTOR_MODULE,))
    actor_module.start()
    import ray

    # ray.init's advice about accelerator variables in Ray's next versions, said at every start.
    warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
    try:
        context = ray.init(namespace=args.namespace, **flower_init_args())
    except Exception as err:
        say_failed(Order.read(sys.stdin), args.namespace, err)
        raise
    try:
        # SIGTERM and SIGINT end the wait for the order or the hold below, and Ray is shut down
        # (set after ray.init, which installs handlers of its own).
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.default_int_handler)
        order = Order.read(sys.stdin)
        if order is None:  # the run wants another Ray, its config was refused, or the launcher is gone
            return
        try:
            actor_module.join()
            actors = start_actors(order.client_app, order.cpus, order.gpus)
        except Exception as err:
            say_failed(order, args.namespace, err)
            raise
        Head(context.address_info["gcs_address"], args.namespace, actors).write(Path(order.file))
        # Until stopped, or the launcher is gone and with it the ServerApp (whose watchdog stops it
        # first: clients stopped under a running ServerApp would be recorded as failed replies).
        while os.getppid() == launcher or server_processes(args.namespace):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        ray.shutdown()  # Ray stops its own processes, its agents included


def say_failed(order: Order | None, namespace: str, err: Exception) -> None:
    """Tell the simulation at once that this head failed (it then starts Ray itself), if an order came."""
    if order is not None:
        Head.failed(namespace, f"{type(err).__name__}: {err}").write(Path(order.file))


if __name__ == "__main__":
    main(sys.argv[1:])
