"""Run the Flower App on a SuperLink this process starts, and stop everything it started.

Flower 1.42 simulations start with ``flwr run`` against a SuperLink. A bare ``flwr run``
would leave a detached local SuperLink behind and, by default, ``uv sync`` the app's
dependencies (a multi-GB CUDA torch); so the launcher starts its own SuperLink in
simulation mode with runtime installs disabled and submits the run with ``--stream``.
Flower's simulation process is ours to start: the SuperExec finds ``flwr-simulation`` first
in this launch's own folder, where it runs ``simulations.flwr_simulation`` (Flower's entry
point with fedhyper's message sweep). Every process of a launch carries the launch's id
(``FEDHYPER_LAUNCH_ID``); when the run ends, fails or is interrupted the launcher stops the
processes carrying it, and a watchdog does the same if the launcher itself is killed. A
second launch in the same run directory (a resume) has an id of its own and is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fedhyper.record import Summary
from fedhyper.results import is_finished
from simulations import sweep
from simulations.flwr_run import port_open
from simulations.flwr_simulation import FLOWER_ENTRY
from simulations.processes import (  # noqa: F401  deploy.py, tests: run_processes, stop_run_processes
    LAUNCH_ENV,
    launch_marker,
    new_launch_id,
    reaper,
    run_processes,
    stop_marked,
    stop_run_processes,
)

log = logging.getLogger("fedhyper")

APP_DIR = Path(__file__).resolve().parents[1]  # the repository root holds pyproject.toml
FEDERATION = "fedhyper-sim"
SUPERLINK_LOG = "superlink.log"
RAY_HEAD = "ray_head"  # the file simulations.ray_head writes the launch's Ray address to
MESSAGE_SWEEP = "message_sweep"  # the file simulations.flwr_simulation writes once fedhyper's sweep starts


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
    sweep_interval: float  # sim.sweep_interval (simulations/sweep.py); 0: Flower's own sweep
    client_cpus: int = 1
    client_gpus: float = 0.0
    ray_address: str = "local"


# Ray passes a task's arguments and results up to this size inline with the call instead of
# through its shared-memory object store; Ray's default of 100 KB sends every model of the
# default CNN (343 KB) through the store. Measured on 2 cores, an actor call carrying 345 KB took
# 2.3-2.7 ms inline against 6.4-7.9 ms through the store (1 MB: 6.5 vs 10.0 ms; 8 MB: 40 vs 28 ms).
RAY_INLINE_BYTES = 1 << 20


# Start-up settings, each unless already set (benchmarks/startup.py measures them together):
START_UP = {
    # SuperExec asks the SuperLink for a new task every second by default: a run waited 0-1 s to start.
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",
    # Ray starts one worker a core for its first driver; Flower's actors need workers with its
    # runtime environment, so those first ones only took CPU from the start-up on a small machine.
    "RAY_prestart_worker_first_driver": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def flower_env(
    flwr_home: Path, ray_address: str, launch_id: str | None = None, start_up: bool = True
) -> dict[str, str]:
    """The environment of every process a launch starts; ``launch_id`` marks them as this launch's.

    ``start_up``: with the simulation's start-up settings (``START_UP``); a deployment, which stays
    up for its whole run, keeps Flower's one-second poll in each of its SuperExecs.
    """
    env = dict(os.environ)
    env.setdefault("RAY_max_direct_call_object_size", str(RAY_INLINE_BYTES))
    if start_up:
        for name, value in START_UP.items():
            env.setdefault(name, value)
    env.update(
        FLWR_HOME=str(flwr_home),
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


def flower_app() -> dict:
    """The app's ``[tool.flwr.app]`` table of ``pyproject.toml``: what Flower bundles and runs."""
    return tomllib.loads((APP_DIR / "pyproject.toml").read_text())["tool"]["flwr"]["app"]


def stage_app(dest: Path) -> Path:
    """A folder from which ``flwr run`` sends the repository's app bundle: ``dest``, holding a copy of its files.

    ``flwr run`` lists every file under the app's folder before it applies ``fab-include``: in a
    checkout with its ``.venv`` and ``results/`` that is about 56,000 files, and the walk took 5-8 s
    of each launch's start-up on 2 cores. The include patterns name a few top folders; only those,
    ``pyproject.toml`` and ``.gitignore`` (which Flower also filters by) are copied.
    """
    patterns = flower_app()["fab-include"]
    tops = {pattern.split("/", 1)[0] for pattern in patterns}
    if any(set(top) & set("*?[!") for top in tops):  # a pattern that matches at any depth: Flower walks it all
        return APP_DIR
    shutil.rmtree(dest, ignore_errors=True)  # nothing left from an older copy
    files = [APP_DIR / name for name in ("pyproject.toml", ".gitignore") if (APP_DIR / name).is_file()]
    for top in sorted(tops):
        for folder, dirs, names in os.walk(APP_DIR / top):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            files += [Path(folder) / name for name in names]
    for path in files:
        target = dest / path.relative_to(APP_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return dest


def simulation_entry(launch_dir: Path, sweep_interval: float, record: Path, ray_head: Path | None) -> Path:
    """A ``flwr-simulation`` in ``launch_dir`` running ``simulations.flwr_simulation``; put the folder first on PATH."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    entry = launch_dir / FLOWER_ENTRY
    ours = [sys.executable, "-m", "simulations.flwr_simulation", "--sweep-interval", str(sweep_interval),
            "--record", str(record), *(["--ray-head", str(ray_head)] if ray_head else [])]  # fmt: skip
    entry.write_text(f'#!/bin/sh\nexec {shlex.join(ours)} -- "$@"\n')
    entry.chmod(0o755)
    return entry


def record_message_sweep(run_dir: Path, record: Path) -> None:
    """Set the summary's ``message_sweep``: fedhyper's where its sweep wrote ``record``, else Flower's."""
    if is_finished(run_dir):
        summary = Summary.read(run_dir)
        summary.message_sweep = record.read_text().strip() if record.is_file() else sweep.FLOWER
        summary.write(run_dir)


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the SuperLink exited with code {proc.returncode}; see {log_file}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the SuperLink did not listen on port {port} within {timeout:.0f}s; see {log_file}")


def start_superlink(flwr_home: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    """A SuperLink in simulation mode on ``port``, with a federation pointing at it; it listens seconds later."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{FEDERATION}"\n\n[superlink.{FEDERATION}]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    # Its state in memory (Flower's default): a launch resumed into this folder shares no database file with the last.
    cmd = [
        _bin("flower-superlink"), "--simulation", "--insecure", "--isolation", "subprocess",
        "--host", "127.0.0.1", "--port", str(port), "--disable-runtime-dependency-installation",
    ]  # fmt: skip
    with (flwr_home / SUPERLINK_LOG).open("w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def client_app_module() -> str:
    """The module of the app's ClientApp (``[tool.flwr.app.components] clientapp``)."""
    return flower_app()["components"]["clientapp"].partition(":")[0]


def start_ray_head(file: Path, spec: SimulationSpec, env: dict[str, str], namespace: str) -> subprocess.Popen:
    """``simulations.ray_head``: the launch's Ray and its client actors, described in ``file`` once up."""
    cmd = [sys.executable, "-m", "simulations.ray_head", str(file), "--client-app", client_app_module(),
           "--cpus", str(spec.client_cpus), "--gpus", str(float(spec.client_gpus)),
           "--namespace", namespace]  # fmt: skip
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def stop_head(head: subprocess.Popen, timeout: float = 10.0) -> None:
    """Ask ``simulations.ray_head`` to shut its Ray down, and wait for it (``stop_marked`` ends what is left)."""
    head.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout)


def _toml(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def run_app(spec: SimulationSpec, run_config: dict[str, str | bool]) -> int:
    """Start a SuperLink, ``flwr run`` the app with ``run_config``, stream its logs; return flwr's exit code."""
    flwr_home = spec.run_dir / ".flwr"
    launch_id = new_launch_id()
    launch_dir = flwr_home / "launches" / launch_id  # this launch's flwr-simulation and its record
    record = launch_dir / MESSAGE_SWEEP
    env = flower_env(flwr_home, spec.ray_address, launch_id)
    ray_head = launch_dir / RAY_HEAD if spec.ray_address == "local" else None
    entry = simulation_entry(launch_dir, spec.sweep_interval, record, ray_head)
    env["PATH"] = os.pathsep.join([str(entry.parent), env["PATH"]])
    app_dir = stage_app(launch_dir / "app")
    federation_config = (
        f"num-supernodes={spec.num_supernodes} client-resources-num-cpus={spec.client_cpus} "
        f"client-resources-num-gpus={float(spec.client_gpus)}"
    )
    run_cfg = " ".join(f"{k}={_toml(v)}" for k, v in run_config.items())
    started: list[subprocess.Popen] = []
    head: subprocess.Popen | None = None
    port = free_port()
    with reaper(launch_marker(launch_id)):
        try:
            if ray_head is not None:  # Ray and the client actors start beside the SuperLink
                head = start_ray_head(ray_head, spec, env, namespace=launch_id)
                started.append(head)
            superlink = start_superlink(flwr_home, env, port)
            started.append(superlink)
            # The CLI imports Flower while the SuperLink starts, and sends the run once it listens.
            cmd = [sys.executable, "-m", "simulations.flwr_run", str(port), "--", "run", str(app_dir), FEDERATION,
                   "--stream", "--run-config", run_cfg, "--federation-config", federation_config]  # fmt: skip
            started.append(subprocess.Popen(cmd, env=env, start_new_session=True))
            _wait_for_port(port, superlink, timeout=60.0, log_file=flwr_home / SUPERLINK_LOG)
            code = started[-1].wait()
        finally:
            if head is not None:  # Ray first, by its own shutdown, which also ends its agents
                stop_head(head)
            stop_marked(launch_marker(launch_id))  # one way out for every ending: done, failed, interrupted
            for proc in started:
                proc.wait()
    record_message_sweep(spec.run_dir, record)
    shutil.rmtree(launch_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # the launches folder, unless another launch is using it
        launch_dir.parent.rmdir()
    return code
