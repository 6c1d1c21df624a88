"""Flower's simulation process with fedhyper's message sweep: the launcher's ``flwr-simulation``.

With ``--isolation subprocess``, Flower's SuperExec starts one ``flwr-simulation`` process per
run, by that name, from PATH; that process holds the in-memory message store, the engine that
sweeps it, the ServerApp and the Ray driver. The launcher puts a ``flwr-simulation`` of its own
first on the run's PATH (``launch.simulation_entry``), which runs

    python -m simulations.flwr_simulation --sweep-interval S --record FILE [--start-ray] -- <Flower's arguments>

This installs ``simulations.sweep`` (interval ``S``, the run's ``sim.sweep_interval``), then
runs Flower's own entry point with Flower's arguments. ``FILE`` is written, holding
``fedhyper``, once fedhyper's sweep hands messages over; the launcher reads it into
``summary.json``'s ``message_sweep``. Nothing else imports this module: a ServerApp started
any other way (a bare ``flwr run``, a deployment) runs on Flower alone.

``--start-ray`` (the launcher's private Ray instance, ``sim.ray_address=local``) starts Ray at
once, in a thread, with the arguments Flower's Ray backend would give it; Flower, finding Ray
running, keeps it. Flower itself starts Ray only after it has loaded the ServerApp and the
ClientApp in this process, which on 2 cores left Ray's 3-4 s of start-up and the clients' own
imports on the path to the first round. One difference: Flower's Ray workers get this process's
``sys.path`` with the run's installed app folder first; these get it without that folder, so they
import the same packages from this environment (for a simulation the launcher bundles exactly
those packages, so the code is the same).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

from simulations import sweep

FLOWER_ENTRY = "flwr-simulation"  # Flower reads its process kind from argv[0]'s name
log = logging.getLogger("fedhyper")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options before ``--``, Flower's arguments after it."""
    ours, flowers = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m simulations.flwr_simulation", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-interval", type=float, required=True, help="sim.sweep_interval; 0: Flower's sweep")
    parser.add_argument("--record", type=Path, required=True, help="written once fedhyper's sweep starts")
    parser.add_argument("--start-ray", action="store_true", help="start a local Ray now, not after the apps load")
    return parser.parse_args(ours), flowers


def ray_init_args() -> dict:
    """What Flower 1.42's ``RayBackend.init_ray`` passes to ``ray.init`` for the launcher's federations.

    The launcher sets no ``init-args`` in its federation config, so Flower's defaults apply
    (``flwr.supercore.constant.DEFAULT_SIMULATION_CONFIG``); Flower also puts the driver's path
    in the workers' ``PYTHONPATH`` and in its own environment.
    """
    from flwr.supercore.constant import DEFAULT_SIMULATION_CONFIG as defaults

    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    os.environ["PYTHONPATH"] = pythonpath
    return {
        "runtime_env": {"env_vars": {"PYTHONPATH": pythonpath}},
        "include_dashboard": False,
        "logging_level": defaults.init_args_logging_level,
        "log_to_driver": defaults.init_args_log_to_driver,
    }


def start_ray() -> threading.Event:
    """Start Ray in a thread; Flower's backend waits until it is up before it looks for a running Ray.

    The thread that calls ``ray.init`` stays alive, idle, until the process ends: Ray 2.55 binds
    the driver's connection to it, and once that thread had ended ``ray.nodes()`` (which Flower's
    actor pool calls) hung on any other thread.
    """
    started = threading.Event()

    def connect() -> None:
        import ray

        try:
            ray.init(**ray_init_args())
        except Exception as err:  # Flower then starts Ray itself, as it would have anyway
            log.warning("starting Ray early failed (%s); Flower starts it", err)
        started.set()
        threading.Event().wait()  # never set: the thread holds the driver until the process exits

    threading.Thread(target=connect, name="fedhyper-ray-driver", daemon=True).start()
    from flwr.server.superlink.fleet.vce.backend import raybackend

    flower_init = raybackend.RayBackend.init_ray

    def init_ray(backend: raybackend.RayBackend, backend_config: dict) -> None:
        started.wait()
        flower_init(backend, backend_config)  # nothing to do when Ray is running

    raybackend.RayBackend.init_ray = init_ray
    return started


def main(argv: list[str]) -> None:
    args, flower_args = parse(argv)
    args.record.unlink(missing_ok=True)
    if args.start_ray:
        start_ray()
    sweep.install(args.sweep_interval, on_start=lambda: args.record.write_text(sweep.FEDHYPER))
    from flwr.simulation.app import flwr_simulation  # after install: nothing of Flower's runs before it

    sys.argv = [FLOWER_ENTRY, *flower_args]
    flwr_simulation()


if __name__ == "__main__":
    main(sys.argv[1:])
