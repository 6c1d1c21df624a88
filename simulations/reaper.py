"""Watchdog of one launch: ``python -m simulations.reaper LAUNCH_ID``.

Reads its standard input until EOF, which comes when the launcher that holds the other end
exits or is killed, then stops every process of the launch (``simulations.processes.stop_launch``:
its ServerApp first, then every process carrying ``FEDHYPER_LAUNCH_ID=LAUNCH_ID``).
"""

from __future__ import annotations

import sys

from simulations.processes import stop_launch

if __name__ == "__main__":
    sys.stdin.buffer.read()
    stop_launch(sys.argv[1])
