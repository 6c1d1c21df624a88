"""Flower's simulation process with fedhyper's message sweep: the launcher's ``flwr-simulation``.

With ``--isolation subprocess``, Flower's SuperExec starts one ``flwr-simulation`` process per
run, by that name, from PATH; that process holds the in-memory message store, the engine that
sweeps it, the ServerApp and the Ray driver. The launcher puts a ``flwr-simulation`` of its own
first on the run's PATH (``launch.simulation_entry``), which runs

    python -m simulations.flwr_simulation --sweep-interval S --record FILE -- <Flower's arguments>

This installs ``simulations.sweep`` (interval ``S``, the run's ``sim.sweep_interval``), then
runs Flower's own entry point with Flower's arguments. ``FILE`` is written, holding
``fedhyper``, once fedhyper's sweep hands messages over; the launcher reads it into
``summary.json``'s ``message_sweep``. Nothing else imports this module: a ServerApp started
any other way (a bare ``flwr run``, a deployment) runs on Flower alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulations import sweep

FLOWER_ENTRY = "flwr-simulation"  # Flower reads its process kind from argv[0]'s name


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options before ``--``, Flower's arguments after it."""
    ours, flowers = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m simulations.flwr_simulation", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-interval", type=float, required=True, help="sim.sweep_interval; 0: Flower's sweep")
    parser.add_argument("--record", type=Path, required=True, help="written once fedhyper's sweep starts")
    return parser.parse_args(ours), flowers


def main(argv: list[str]) -> None:
    args, flower_args = parse(argv)
    args.record.unlink(missing_ok=True)
    sweep.install(args.sweep_interval, on_start=lambda: args.record.write_text(sweep.FEDHYPER))
    from flwr.simulation.app import flwr_simulation  # after install: nothing of Flower's runs before it

    sys.argv = [FLOWER_ENTRY, *flower_args]
    flwr_simulation()


if __name__ == "__main__":
    main(sys.argv[1:])
