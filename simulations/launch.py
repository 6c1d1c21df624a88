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
from simulations import ray_head, sweep
from simulations.flwr_run import port_open
from simulations.flwr_simulation import FLOWER_ENTRY
from simulations.processes import (  # noqa: F401  deploy.py, tests: run_processes, stop_run_processes
    LAUNCH_ENV,
    SERVER_ENV,
    flower_env,
    launch_marker,
    new_launch_id,
    reaper,
    record_launch,
    run_processes,
    stop_marked,
    stop_run_processes,
    stop_server,
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
    entry.write_text(f'#!/bin/sh\nexport {SERVER_ENV}=1\nexec {shlex.join(ours)} -- "$@"\n')
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


def _toml(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def ordered_head(
    head: ray_head.Started | None, file: Path | None, spec: SimulationSpec, launch_id: str, env: dict[str, str]
) -> ray_head.Started | None:
    """The launch's Ray head (``head``, else one started now), ordered to write ``file``; None without ``file``.

    No ``file``: the run uses another Ray (``sim.ray_address``), and a head started early is cancelled.
    """
    if file is None:
        if head is not None:
            head.cancel()
        return None
    head = head or ray_head.start(launch_id, env)
    head.order(ray_head.Order(str(file), client_app_module(), spec.client_cpus, spec.client_gpus))
    return head


def run_app(spec: SimulationSpec, run_config: dict[str, str | bool], head: ray_head.Started | None = None) -> int:
    """Start a SuperLink, ``flwr run`` the app with ``run_config``, stream its logs; return flwr's exit code.

    ``head``: this launch's Ray, started before its config was known (``ray_head.start_before_config``);
    it is ordered its actors if the run wants a local Ray, else cancelled. Without it, one starts here.
    """
    flwr_home = spec.run_dir / ".flwr"
    launch_id = head.launch_id if head is not None else new_launch_id()
    record_launch(flwr_home, launch_id)  # its Ray may carry the launch's id only: found by it (run_processes)
    launch_dir = flwr_home / "launches" / launch_id  # this launch's flwr-simulation and its record
    record = launch_dir / MESSAGE_SWEEP
    env = flower_env(flwr_home, spec.ray_address, launch_id)
    head_file = launch_dir / RAY_HEAD if spec.ray_address == "local" else None
    entry = simulation_entry(launch_dir, spec.sweep_interval, record, head_file)
    env["PATH"] = os.pathsep.join([str(entry.parent), env["PATH"]])
    app_dir = stage_app(launch_dir / "app")
    federation_config = (
        f"num-supernodes={spec.num_supernodes} client-resources-num-cpus={spec.client_cpus} "
        f"client-resources-num-gpus={float(spec.client_gpus)}"
    )
    run_cfg = " ".join(f"{k}={_toml(v)}" for k, v in run_config.items())
    started: list[subprocess.Popen] = []
    port = free_port()
    with reaper(launch_id):
        try:
            head = ordered_head(head, head_file, spec, launch_id, env)  # Ray starts beside the SuperLink, or has
            if head is not None:
                started.append(head.process)
            superlink = start_superlink(flwr_home, env, port)
            started.append(superlink)
            # The CLI imports Flower while the SuperLink starts, and sends the run once it listens.
            cmd = [sys.executable, "-m", "simulations.flwr_run", str(port), "--", "run", str(app_dir), FEDERATION,
                   "--stream", "--run-config", run_cfg, "--federation-config", federation_config]  # fmt: skip
            started.append(subprocess.Popen(cmd, env=env, start_new_session=True))
            _wait_for_port(port, superlink, timeout=60.0, log_file=flwr_home / SUPERLINK_LOG)
            code = started[-1].wait()
        finally:  # one way out for every ending: done, failed, interrupted
            stop_server(launch_id)  # before its clients, so that no round it records lost them to this stop
            if head is not None:  # then Ray, by its own shutdown, which also ends its agents
                head.stop()
            stop_marked(launch_marker(launch_id))
            for proc in started:
                proc.wait()
    record_message_sweep(spec.run_dir, record)
    shutil.rmtree(launch_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # the launches folder, unless another launch is using it
        launch_dir.parent.rmdir()
    return code
