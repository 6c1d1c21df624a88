"""The launch's private Ray instance and its client actors, started as the launch starts.

``python -m simulations.ray_head FILE --client-app MODULE --cpus C --gpus G``

Flower starts Ray, and then one actor a client slot, only once the SuperLink, the SuperExec and
its simulation process are up and that process has loaded the ServerApp and the ClientApp; each
actor then starts a Python worker that imports Flower, torch and the ClientApp again. On 2 cores
that was most of a 50-client simulation's 18 s before its first round. The launcher starts this
process beside the SuperLink instead. It

1. starts a local Ray (``ray.init()`` on free ports, with the arguments Flower's backend would
   give it), in a namespace of the launch's own;
2. creates Flower's own client actor (``ClientAppActor``) as many times as Flower would (one per
   ``C`` CPUs and ``G`` GPUs of the cluster), as named detached actors that import ``MODULE``
   (the ClientApp) as they start;
3. writes the Ray address, the namespace and the actors' names to ``FILE`` (JSON), and holds
   the instance until it is stopped.

The simulation process (``simulations.flwr_simulation --ray-head FILE``) connects to that
address as a second driver, as it would to a cluster given by ``sim.ray_address``, and Flower's
actor pool takes these actors instead of creating its own: by then their workers have started
and imported the ClientApp. Every Ray process inherits this one's environment, so the launch's
marker reaches them and the launcher stops them with the rest of the launch.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import signal
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

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


def import_client_app(module: str) -> None:
    """A client actor's start: import the ClientApp's module, so that its first message finds it loaded."""
    importlib.import_module(module)


def start_actors(module: str, cpus: float, gpus: float) -> list[str]:
    """Flower's client actors, as many as its pool would create, named and detached; their names."""
    ray_actor = importlib.import_module(ACTOR_MODULE)

    resources = {"num_cpus": cpus, "num_gpus": gpus}
    names = [f"client-actor-{i}" for i in range(ray_actor.pool_size_from_resources(resources))]
    on_start = functools.partial(import_client_app, module)
    for name in names:
        ray_actor.ClientAppActor.options(name=name, lifetime="detached", **resources).remote(on_actor_init_fn=on_start)
    return names


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulations.ray_head", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="where to write the address, namespace and actor names (JSON)")
    parser.add_argument("--client-app", required=True, help="the ClientApp's module, imported by each actor")
    parser.add_argument("--cpus", type=float, required=True, help="CPUs per client actor (sim.client_cpus)")
    parser.add_argument("--gpus", type=float, required=True, help="GPUs per client actor (sim.client_gpus)")
    parser.add_argument("--namespace", default="fedhyper", help="Ray namespace of the actors")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse(argv)
    os.environ["PYTHONPATH"] = worker_path()
    # Flower's actor module takes about a second to import; Ray's start mostly waits on its daemons.
    actor_module = threading.Thread(target=importlib.import_module, args=(ACTOR_MODULE,))
    actor_module.start()
    import ray

    stop = threading.Event()
    try:
        context = ray.init(namespace=args.namespace, **flower_init_args())
        for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs handlers of its own
            signal.signal(sig, lambda *_: stop.set())
        actor_module.join()
        actors = start_actors(args.client_app, args.cpus, args.gpus)
    except Exception as err:  # said at once, so that the simulation does not wait for an address
        Head("", args.namespace, [], error=f"{type(err).__name__}: {err}").write(args.file)
        raise
    Head(context.address_info["gcs_address"], args.namespace, actors).write(args.file)
    while not stop.wait(0.5) and os.getppid() != 1:  # until stopped, or the launcher is gone
        pass
    ray.shutdown()  # Ray stops its own processes, its agents included


if __name__ == "__main__":
    main(sys.argv[1:])
