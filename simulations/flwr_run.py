"""Flower's ``flwr`` CLI, started beside the SuperLink: ``python -m simulations.flwr_run PORT -- <flwr's arguments>``.

The CLI spends about a second importing Flower before it sends anything, and the SuperLink
about two before it listens. The launcher starts both at once: this entry point imports the
CLI, waits until the SuperLink accepts connections on ``PORT`` (a CLI that finds no SuperLink
would start one of its own), then runs Flower's own entry point with Flower's arguments.
"""

from __future__ import annotations

import socket
import sys
import time

WAIT_S = 60.0


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] != "--":
        raise SystemExit("usage: python -m simulations.flwr_run PORT -- <flwr's arguments>")
    port, flower_args = int(argv[0]), argv[2:]
    from flwr.cli.app import app  # the slow part, while the SuperLink starts

    deadline = time.monotonic() + WAIT_S
    while not port_open(port):
        if time.monotonic() > deadline:
            raise SystemExit(f"no SuperLink listened on port {port} within {WAIT_S:.0f}s")
        time.sleep(0.05)
    sys.argv = ["flwr", *flower_args]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
