"""Run the Flower App on a SuperLink this process starts, and stop everything it started.

Flower 1.42 simulations start with ``flwr run`` against a SuperLink. A bare ``flwr run``
would leave a detached local SuperLink behind and, by default, ``uv sync`` the app's
dependencies (a multi-GB CUDA torch); so the launcher starts its own SuperLink in
simulation mode with runtime installs disabled, submits the run with ``--stream``, and
stops every process of the run (all carry the run's FLWR_HOME) when it ends, fails or is
interrupted; a watchdog process does the same if the launcher itself is killed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from simulations import sweep

log = logging.getLogger("fedhyper")

APP_DIR = Path(__file__).resolve().parents[1]  # the repository root holds pyproject.toml
FEDERATION = "fedhyper-sim"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    """A Flower console script from this interpreter's environment, else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


@dataclass
class SimulationSpec:
    run_dir: Path
    num_supernodes: int
    client_cpus: int = 1
    client_gpus: float = 0.0
    ray_address: str = "local"
    sweep_interval: float = sweep.DEFAULT_INTERVAL  # simulations/sweep.py; 0: Flower's own


# Ray passes a task's arguments and results up to this size inline with the call instead of
# through its shared-memory object store; Ray's default of 100 KB sends every model of the
# default CNN (343 KB) through the store. Measured on 2 cores, an actor call carrying 345 KB took
# 2.3-2.7 ms inline against 6.4-7.9 ms through the store (1 MB: 6.5 vs 10.0 ms; 8 MB: 40 vs 28 ms).
RAY_INLINE_BYTES = 1 << 20


def flower_env(flwr_home: Path, ray_address: str, sweep_interval: float = sweep.DEFAULT_INTERVAL) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_max_direct_call_object_size", str(RAY_INLINE_BYTES))
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        # Ray attaches to any head already running on this machine unless told otherwise.
        RAY_ADDRESS=ray_address,
        PYTHONUNBUFFERED="1",
        FEDHYPER_SWEEP_INTERVAL=str(sweep_interval),  # read where the ServerApp loads: simulations/sweep.py
        # Flower starts its own helpers (flower-superexec, flwr-serverapp) by name.
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    return env


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


def run_processes(flwr_home: Path) -> list[int]:
    """Live processes of a run: those carrying its FLWR_HOME, and all their descendants.

    Flower detaches some of its processes (SuperExec, the simulation with its Ray cluster)
    into sessions of their own, so neither process groups nor the SuperLink's shutdown reach
    them all; the environment does, and Ray's agents (which drop it) are its descendants.
    """
    marker = f"FLWR_HOME={flwr_home}".encode()
    parents = _parents()
    found: set[int] = set()
    for pid in parents:
        if pid != os.getpid():
            try:
                if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    found.add(pid)
            except OSError:  # gone, or not ours to read
                continue
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return sorted(found)


def stop_run_processes(flwr_home: Path, grace: float = 10.0) -> None:
    """SIGTERM every process of the run, then SIGKILL those still there after ``grace`` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = run_processes(flwr_home)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while run_processes(flwr_home) and time.monotonic() < deadline:
            time.sleep(0.2)


@contextmanager
def reaper(flwr_home: Path) -> Iterator[None]:
    """A watchdog that stops the run's processes once this launcher is gone, however it went.

    It waits for EOF on a pipe whose writing end only this process holds: a normal exit,
    an exception and a SIGKILL all close it.
    """
    env = {k: v for k, v in os.environ.items() if k != "FLWR_HOME"}  # the reaper must not match itself
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "simulations.reaper", str(flwr_home)],
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


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the SuperLink exited with code {proc.returncode}; see {log_file}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the SuperLink did not listen on port {port} within {timeout:.0f}s; see {log_file}")


def start_superlink(flwr_home: Path, env: dict[str, str]) -> subprocess.Popen:
    """A SuperLink in simulation mode on a free local port, with a federation pointing at it."""
    port = free_port()
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{FEDERATION}"\n\n[superlink.{FEDERATION}]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    log_file = flwr_home / "superlink.log"
    cmd = [
        _bin("flower-superlink"), "--simulation", "--insecure", "--isolation", "subprocess",
        "--host", "127.0.0.1", "--port", str(port), "--disable-runtime-dependency-installation",
        "--database", str(flwr_home / "state.db"),
    ]  # fmt: skip
    with log_file.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_for_port(port, proc, timeout=60.0, log_file=log_file)
    return proc


def _toml(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def run_app(spec: SimulationSpec, run_config: dict[str, str | bool]) -> int:
    """Start a SuperLink, ``flwr run`` the app with ``run_config``, stream its logs; return flwr's exit code."""
    flwr_home = spec.run_dir / ".flwr"
    env = flower_env(flwr_home, spec.ray_address, spec.sweep_interval)
    federation_config = (
        f"num-supernodes={spec.num_supernodes} client-resources-num-cpus={spec.client_cpus} "
        f"client-resources-num-gpus={float(spec.client_gpus)}"
    )
    run_cfg = " ".join(f"{k}={_toml(v)}" for k, v in run_config.items())
    started: list[subprocess.Popen] = []
    with reaper(flwr_home):
        try:
            started.append(start_superlink(flwr_home, env))
            cmd = [_bin("flwr"), "run", str(APP_DIR), FEDERATION, "--stream",
                   "--run-config", run_cfg, "--federation-config", federation_config]  # fmt: skip
            started.append(subprocess.Popen(cmd, env=env, start_new_session=True))
            return started[-1].wait()
        finally:
            stop_run_processes(flwr_home)  # one way out for every ending: done, failed, interrupted
            for proc in started:
                proc.wait()
