"""Flower's simulation process with fedhyper's message sweep: the launcher's ``flwr-simulation``.

With ``--isolation subprocess``, Flower's SuperExec starts one ``flwr-simulation`` process per
run, by that name, from PATH; that process holds the in-memory message store, the engine that
sweeps it, the ServerApp and the Ray driver. The launcher puts a ``flwr-simulation`` of its own
first on the run's PATH (``launch.simulation_entry``), which runs

    python -m simulations.flwr_simulation --sweep-interval S --record FILE [--ray-head FILE] -- <Flower's arguments>

The entry marks this process as the launch's ServerApp (``processes.SERVER_ENV``): when the launch
ends or its launcher is killed, it is stopped before Ray and its clients (``processes.stop_launch``).
It installs ``simulations.sweep`` (interval ``S``, the run's ``sim.sweep_interval``), then
runs Flower's own entry point with Flower's arguments. ``FILE`` is written, holding
``fedhyper``, once fedhyper's sweep hands messages over; the launcher reads it into
``summary.json``'s ``message_sweep``. Nothing else imports this module: a ServerApp started
any other way (a bare ``flwr run``, a deployment) runs on Flower alone.

``--ray-head FILE`` (the launcher's private Ray, ``sim.ray_address=local``): the launcher has
started Ray and Flower's client actors beside the SuperLink (``simulations.ray_head``), which
describes them in ``FILE``; this process connects to that Ray as soon as it starts, in a thread,
with the arguments Flower's Ray backend would give it, and Flower's actor pool takes those
actors instead of creating its own. Without it Flower starts Ray, and then its actors, only
after it has loaded the ServerApp and the ClientApp in this process: on 2 cores that left Ray's
3-4 s of start-up and the workers' own imports on the path to the first round. One difference:
Flower's workers get this process's ``sys.path`` with the run's installed app folder first; the
launch's get the head's, without that folder, so they import the same packages from this
environment (for a simulation the launcher bundles exactly those packages: the code is the same).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from simulations import ray_head, sweep
from simulations.processes import LAUNCH_ENV
from simulations.ray_head import Head, flower_init_args, worker_path

FLOWER_ENTRY = "flwr-simulation"  # Flower reads its process kind from argv[0]'s name
log = logging.getLogger("fedhyper")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options before ``--``, Flower's arguments after it."""
    ours, flowers = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m simulations.flwr_simulation", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-interval", type=float, required=True, help="sim.sweep_interval; 0: Flower's sweep")
    parser.add_argument("--record", type=Path, required=True, help="written once fedhyper's sweep starts")
    parser.add_argument("--ray-head", type=Path, help="connect to the Ray simulations.ray_head describes here")
    return parser.parse_args(ours), flowers


def ray_init_args() -> dict:
    """What Flower 1.42's ``RayBackend.init_ray`` passes to ``ray.init`` for the launcher's federations.

    The launcher sets no ``init-args`` in its federation config, so Flower's defaults apply
    (``flwr.supercore.constant.DEFAULT_SIMULATION_CONFIG``); Flower also puts the driver's path
    in the workers' ``PYTHONPATH`` and in its own environment.
    """
    pythonpath = worker_path()
    os.environ["PYTHONPATH"] = pythonpath
    return {"runtime_env": {"env_vars": {"PYTHONPATH": pythonpath}}, **flower_init_args()}


def wait_for(file: Path, head_alive: Callable[[], bool] = lambda: True, timeout: float = 600.0) -> Head:
    """What ``simulations.ray_head`` wrote to ``file``, once it has.

    Waits while ``head_alive()`` (asked each second), for at most ``timeout`` s: a simulation that
    gave up while the head was still starting its actors would start a second Ray beside it, so the
    bound is far above what a head takes (seconds; the runs 30 to 150 s late in this machine's CI
    runs were late from the import deadlock ``import_for_the_driver`` explains, not from the head).
    A head that fails says why in ``file``; one gone without a word ends the wait.
    """
    start = time.monotonic()
    asked = start
    while not file.is_file():
        now = time.monotonic()
        if now - start > timeout:
            raise TimeoutError(f"simulations.ray_head wrote nothing to {file} in {timeout:.0f}s")
        if now - asked >= 1.0:
            asked = now
            if not head_alive() and not file.is_file():
                raise RuntimeError(f"simulations.ray_head is gone and wrote nothing to {file}")
        time.sleep(0.02)
    head = Head.read(file)
    if head.error:
        raise RuntimeError(f"simulations.ray_head failed: {head.error}")
    return head


def hand_actors_to_flower(actors: list) -> None:
    """Flower's actor pool takes ``actors`` (handles) before it creates any of its own."""
    from flwr.simulation.ray_transport import ray_actor

    flower_init = ray_actor.BasicActorPool.__init__

    def init(pool: ray_actor.BasicActorPool, *args, **kwargs) -> None:
        flower_init(pool, *args, **kwargs)
        create = pool.create_actor_fn
        pool.create_actor_fn = lambda: actors.pop(0) if actors else create()

    ray_actor.BasicActorPool.__init__ = init


def take_launch_ray(head_file: Path) -> bool:
    """Connect to the Ray ``head_file`` describes and give Flower its actors; whether that worked.

    On any failure Ray is left shut down, and Flower starts Ray and its actors itself, as it would
    have anyway. A connection kept after a failed actor look-up would have Flower create its own
    actor on the launch's Ray, whose CPUs the launch's actors hold: that actor never started and
    the run waited for it forever.
    """
    import ray

    try:
        launch_id = os.environ.get(LAUNCH_ENV)  # the launcher's mark: its head carries it too
        head = wait_for(head_file, functools.partial(ray_head.running, launch_id) if launch_id else lambda: True)
        ray.init(address=head.address, **ray_init_args(), namespace=head.namespace)
        hand_actors_to_flower([ray.get_actor(name) for name in head.actors])
        return True
    except Exception as err:
        log.warning("connecting to the launch's Ray failed (%s); Flower starts its own", err)
        ray.shutdown()  # nothing to do when ray.init had not connected
        return False


DRIVER_THREAD = "fedhyper-ray-driver"


def import_for_the_driver() -> None:
    """Import, on the calling thread, every module of Flower's (and Ray) that ``take_launch_ray`` uses.

    The driver's thread then imports none of Flower's while this one goes on importing Flower. When it
    did (Flower's actor module, for ``hand_actors_to_flower``), the two threads took the import locks
    of Flower's Ray backend package in opposite orders, and Python broke the deadlock by raising
    ``_DeadlockError`` in this thread: the process died before it took its task, and the SuperLink
    started another 30 s later. CI runs of the suite had launches that lost 30 to 150 s that way (1 to
    5 dead processes, each a Ray driver that left after about a second in the head's Ray session logs).
    """
    import ray  # noqa: F401
    from flwr.simulation.ray_transport import ray_actor  # noqa: F401
    from flwr.supercore.constant import DEFAULT_SIMULATION_CONFIG  # noqa: F401  (flower_init_args)


def connect(head_file: Path) -> threading.Event:
    """Connect to the launch's Ray (``simulations.ray_head``) in a thread, and give its actors to Flower.

    Flower's backend waits until the connection is made, then finds Ray running and keeps it.
    The thread that calls ``ray.init`` stays alive, idle, until the process ends: Ray 2.55 binds
    the driver's connection to it, and once that thread had ended ``ray.nodes()`` (which Flower's
    actor pool calls) hung on any other thread.
    """
    import_for_the_driver()
    from flwr.server.superlink.fleet.vce.backend import raybackend

    connected = threading.Event()

    def run() -> None:
        take_launch_ray(head_file)
        connected.set()
        threading.Event().wait()  # never set: the thread holds the driver until the process exits

    threading.Thread(target=run, name=DRIVER_THREAD, daemon=True).start()
    flower_init = raybackend.RayBackend.init_ray

    def init_ray(backend: raybackend.RayBackend, backend_config: dict) -> None:
        connected.wait()
        flower_init(backend, backend_config)  # nothing to do when Ray is running

    raybackend.RayBackend.init_ray = init_ray
    return connected


def main(argv: list[str]) -> None:
    args, flower_args = parse(argv)
    args.record.unlink(missing_ok=True)
    if args.ray_head is not None:
        connect(args.ray_head)
    sweep.install(args.sweep_interval, on_start=lambda: args.record.write_text(sweep.FEDHYPER))
    from flwr.simulation.app import flwr_simulation  # after install: nothing of Flower's runs before it

    sys.argv = [FLOWER_ENTRY, *flower_args]
    flwr_simulation()


if __name__ == "__main__":
    main(sys.argv[1:])
