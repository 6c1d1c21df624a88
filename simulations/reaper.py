"""Watchdog of one launch: ``python -m simulations.reaper KEY=VALUE``.

Reads its standard input until EOF, which comes when the launcher that holds the other end
exits or is killed, then stops every process whose environment holds ``KEY=VALUE``
(``simulations.processes.launch_marker``: a launch's id).
"""

from __future__ import annotations

import sys

from simulations.processes import stop_marked

if __name__ == "__main__":
    sys.stdin.buffer.read()
    stop_marked(sys.argv[1])
