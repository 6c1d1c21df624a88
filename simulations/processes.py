"""Which processes belong to a launch, and stopping them, however the launcher ended.

A launch marks every process it starts with an entry of their environment: its own id
(``FEDHYPER_LAUNCH_ID=<uuid>``), which no other launch shares, not even one resumed into the
same run directory at once. Flower detaches some of its processes (SuperExec, the simulation
with its Ray cluster) into sessions of their own, so neither process groups nor the
SuperLink's shutdown reach them all; the environment does, and Ray's agents (which drop it)
are descendants of a marked process. ``run_processes(flwr_home)`` finds the processes of a run
folder instead, for observers (tests) and for starters that set no launch id: those carrying
``FLWR_HOME=flwr_home``, and those of every launch recorded in it (``record_launch``; a launch's
Ray starts before its folder is known, so its processes carry the launch's id only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LAUNCH_ENV = "FEDHYPER_LAUNCH_ID"
# Set (to 1) on the launch's ServerApp process, which writes the run's record: stopped first (stop_launch).
SERVER_ENV = "FEDHYPER_SERVER_PROCESS"
LAUNCHES = "launch-ids"  # in a run's Flower folder: the id of every launch into it, one a line
APP_DIR = Path(__file__).resolve().parents[1]  # where ``python -m simulations.reaper`` resolves


# Ray passes a task's arguments and results up to this size inline with the call instead of
# through its shared-memory object store; Ray's default of 100 KB sends every model of the
# default CNN (343 KB) through the store. Measured on 2 cores, an actor call carrying 345 KB took
# 2.3-2.7 ms inline against 6.4-7.9 ms through the store (1 MB: 6.5 vs 10.0 ms; 8 MB: 40 vs 28 ms).
RAY_INLINE_BYTES = 1 << 20


# Start-up settings, each unless already set (benchmarks/startup.py measures them together):
START_UP = {
    # SuperExec asks the SuperLink for a new task every second by default: a run waited 0-1 s to start.
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",
    # Ray starts one worker a core for its first driver. Flower's own actors (when Flower starts Ray)
    # need workers with its runtime environment, so those only took CPU from the start-up on a small
    # machine; the launch's head (simulations/ray_head.py) could use them, and measured no gain.
    "RAY_prestart_worker_first_driver": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def flower_env(
    flwr_home: Path | None, ray_address: str, launch_id: str | None = None, start_up: bool = True
) -> dict[str, str]:
    """The environment of every process a launch starts; ``launch_id`` marks them as this launch's.

    ``flwr_home``: Flower's folder for the launch; None for a process started before the run
    directory is known (``simulations.ray_head`` started early), which runs no Flower component.

    ``start_up``: with the simulation's start-up settings (``START_UP``); a deployment, which stays
    up for its whole run, keeps Flower's one-second poll in each of its SuperExecs.
    """
    env = dict(os.environ)
    env.setdefault("RAY_max_direct_call_object_size", str(RAY_INLINE_BYTES))
    if start_up:
        for name, value in START_UP.items():
            env.setdefault(name, value)
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    env.update(
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        # Ray attaches to any head already running on this machine unless told otherwise.
        RAY_ADDRESS=ray_address,
        PYTHONUNBUFFERED="1",
        # Flower starts its own helpers (flower-superexec, flwr-serverapp) by name.
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    if launch_id is not None:
        env[LAUNCH_ENV] = launch_id
    return env


def new_launch_id() -> str:
    return uuid.uuid4().hex


def launch_marker(launch_id: str) -> str:
    """The environment entry every process of launch ``launch_id`` carries."""
    return f"{LAUNCH_ENV}={launch_id}"


def folder_marker(flwr_home: Path) -> str:
    return f"FLWR_HOME={flwr_home}"


def record_launch(flwr_home: Path, launch_id: str) -> None:
    """Record launch ``launch_id`` in the run folder ``flwr_home`` (kept after the launch, for observers)."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    with (flwr_home / LAUNCHES).open("a") as out:
        out.write(f"{launch_id}\n")


def folder_markers(flwr_home: Path) -> list[str]:
    """What marks a process of the run folder ``flwr_home``: its ``FLWR_HOME``, or a launch recorded there."""
    record = flwr_home / LAUNCHES
    launches = record.read_text().split() if record.is_file() else []
    return [folder_marker(flwr_home), *(launch_marker(launch_id) for launch_id in launches)]


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live process (Linux /proc)."""
    parents = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold ") "
    return parents


def _environments(pids: list[int]) -> dict[int, set[bytes]]:
    """pid -> the ``KEY=VALUE`` entries its environment started with, for those of ``pids`` still readable."""
    environments = {}
    for pid in pids:
        if pid != os.getpid():
            try:
                environments[pid] = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
            except OSError:  # gone, or not ours to read
                continue
    return environments


def marked_processes(*markers: str) -> list[int]:
    """Live processes whose environment holds one of ``markers`` (``KEY=VALUE``), and all their descendants."""
    entries = {marker.encode() for marker in markers}
    parents = _parents()
    found = {pid for pid, environment in _environments(list(parents)).items() if entries & environment}
    return sorted(with_descendants(found, parents))


def with_descendants(pids: set[int], parents: dict[int, int] | None = None) -> set[int]:
    """``pids`` and all their descendants (``parents``: pid -> parent pid, read from /proc now if not given)."""
    children: dict[int, list[int]] = {}
    for pid, parent in (parents if parents is not None else _parents()).items():
        children.setdefault(parent, []).append(pid)
    found = set(pids)
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def run_processes(flwr_home: Path) -> list[int]:
    """Live processes of the run folder ``flwr_home`` (any launch into it), and their descendants."""
    return marked_processes(*folder_markers(flwr_home))


def launch_processes(launch_id: str) -> list[int]:
    """Live processes of launch ``launch_id``, and their descendants."""
    return marked_processes(launch_marker(launch_id))


def server_processes(launch_id: str) -> list[int]:
    """Launch ``launch_id``'s ServerApp process: marked with ``SERVER_ENV`` and its launch, its parent not.

    Processes it starts inherit the mark (the Ray that Flower starts when the launch's own could
    not start): only the topmost is the server.
    """
    entries = {launch_marker(launch_id).encode(), f"{SERVER_ENV}=1".encode()}
    parents = _parents()
    environments = _environments(list(parents))
    marked = {pid for pid, environment in environments.items() if entries <= environment}
    return sorted(pid for pid in marked if parents[pid] not in marked)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_marked(*markers: str, grace: float = 10.0) -> None:
    """SIGTERM every process carrying one of ``markers``, then SIGKILL those still there after ``grace`` s."""
    _terminate(lambda: marked_processes(*markers), grace)


def _terminate(find: Callable[[], list[int]], grace: float) -> None:
    """SIGTERM the processes ``find`` returns, then SIGKILL those still there after ``grace`` s.

    A process once found is followed by its pid, not by what found it: Ray's agents rewrite their
    environment for their process titles, so once their parent (the raylet) is gone they carry no
    trace of the launch, and a SIGTERM does not always end them.
    """
    found: set[int] = set()

    def running() -> set[int]:  # those found before and those found now, still running
        return {pid for pid in found | set(find()) if alive(pid)}

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        found = running()
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while found and time.monotonic() < deadline:
            time.sleep(0.1)
            found = running()


def stop_server(launch_id: str, grace: float = 10.0) -> None:
    """Stop launch ``launch_id``'s ServerApp process, and wait until it is gone.

    Before its clients: a client stopped while the ServerApp still ran would be recorded as a
    failed reply, and its round (perhaps a checkpoint) kept, so that a run resumed from that
    checkpoint would not continue the run it was.
    """
    _terminate(lambda: server_processes(launch_id), grace)


def stop_launch(launch_id: str, grace: float = 10.0) -> None:
    """Stop every process of launch ``launch_id``: its ServerApp first, then the rest."""
    stop_server(launch_id, grace)
    stop_marked(launch_marker(launch_id), grace=grace)


def stop_run_processes(flwr_home: Path, grace: float = 10.0) -> None:
    """Stop every process of the run folder ``flwr_home``, whichever launch started it."""
    stop_marked(*folder_markers(flwr_home), grace=grace)


@contextmanager
def reaper(launch_id: str) -> Iterator[None]:
    """A watchdog that stops launch ``launch_id`` (``stop_launch``) once this process is gone, however it went.

    The watchdog waits for EOF on a pipe whose writing end only this process holds: a normal
    exit, an exception and a SIGKILL all close it.
    """
    env = {k: v for k, v in os.environ.items() if k != LAUNCH_ENV}  # the watchdog must not match itself
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "simulations.reaper", launch_id],
        stdin=subprocess.PIPE,
        env=env,
        cwd=APP_DIR,
        start_new_session=True,
    )
    try:
        yield
    finally:
        watchdog.stdin.close()
        watchdog.wait()
