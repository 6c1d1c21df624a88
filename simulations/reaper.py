"""Watchdog of one run: ``python -m simulations.reaper <FLWR_HOME>``.

Reads its standard input until EOF, which comes when the launcher that holds the other end
exits or is killed, then stops every process carrying that FLWR_HOME.
"""

from __future__ import annotations

import sys
from pathlib import Path

from simulations.launch import stop_run_processes

if __name__ == "__main__":
    sys.stdin.buffer.read()
    stop_run_processes(Path(sys.argv[1]))
