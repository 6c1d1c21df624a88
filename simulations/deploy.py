"""Try real clients on this machine: ``python -m simulations.deploy --nodes 2 [overrides]``.

Starts one SuperLink and N SuperNodes on 127.0.0.1 on Flower's deployment engine — the
same ServerApp and ClientApp as a simulation, talking over the network — then ``flwr run``
against them, and stops every process it started when the run ends, fails, or is
interrupted (Ctrl-C, SIGTERM; a watchdog does it if the launcher is killed).

Secure by default: TLS with a trial CA and SuperNode authentication, so that only nodes
whose public key is registered may join (``simulations.certs`` makes both; ``--certs DIR``
reuses a directory it made). ``--insecure`` turns both off. Each ``--data-dir`` gives one
node its own data (``fedhyper.data.local``); nodes without one train on their simulated
partition of the configured dataset. Experiment options are the Hydra overrides of
``simulations.run``; ``data.num_clients`` follows ``--nodes`` unless given.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fedhyper import protocol, record, tracking
from simulations import certs
from simulations.launch import APP_DIR, _bin, _toml, _wait_for_port, free_port, stage_app
from simulations.processes import flower_env, launch_marker, new_launch_id, reaper, stop_marked
from simulations.run import CONF_DIR, precheck
from strategies import experiment

log = logging.getLogger("fedhyper")
FEDERATION = "fedhyper-deploy"


def _pairs(config: dict[str, str | bool | int]) -> str:
    """Flower's ``key=value`` form of a node or run config."""
    return " ".join(f"{k}={_toml(v)}" for k, v in config.items())


@dataclass
class LocalDeployment:
    """A SuperLink on 127.0.0.1 and the SuperNodes started against it; all carry ``flwr_home`` and ``launch_id``."""

    flwr_home: Path
    certs: Path | None  # None: no TLS, no node authentication
    port: int = 0
    started: list[subprocess.Popen] = field(default_factory=list)
    # Marks every process of this deployment: stopping it never touches another launch in the same folder.
    launch_id: str = field(default_factory=new_launch_id)

    @property
    def env(self) -> dict[str, str]:
        return flower_env(self.flwr_home, ray_address="local", launch_id=self.launch_id, start_up=False)

    def start_superlink(self) -> None:
        self.port = free_port()
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        security = f'root-certificates = "{self.certs / certs.CA_CERT}"' if self.certs else "insecure = true"
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{FEDERATION}"\n\n[superlink.{FEDERATION}]\n'
            f'address = "127.0.0.1:{self.port}"\n{security}\n'
        )
        if self.certs:
            security_args = [
                "--ssl-ca-certfile", str(self.certs / certs.CA_CERT),
                "--ssl-certfile", str(self.certs / certs.SERVER_CERT),
                "--ssl-keyfile", str(self.certs / certs.SERVER_KEY),
                "--enable-supernode-auth",
            ]  # fmt: skip
        else:
            security_args = ["--insecure"]
        log_file = self.flwr_home / "superlink.log"
        cmd = [_bin("flower-superlink"), *security_args, "--isolation", "subprocess",
               "--host", "127.0.0.1", "--port", str(self.port), "--disable-runtime-dependency-installation",
               "--database", str(self.flwr_home / "state.db")]  # fmt: skip
        proc = self._spawn(cmd, log_file)
        _wait_for_port(self.port, proc, timeout=60.0, log_file=log_file)

    def register(self, public_key: Path) -> None:
        """Admit the node holding the private half of ``public_key``."""
        cmd = [_bin("flwr"), "supernode", "register", str(public_key), FEDERATION]
        done = subprocess.run(cmd, env=self.env, cwd=APP_DIR, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"registering {public_key} failed: {(done.stdout + done.stderr).strip()[-500:]}")

    def start_supernode(self, partition_id: int, key: Path | None, data_dir: Path | None) -> subprocess.Popen:
        """A SuperNode for client ``partition_id``, with its own data if ``data_dir`` is given."""
        node_config = {protocol.NODE_PARTITION_ID: partition_id}
        if data_dir is not None:
            node_config[protocol.NODE_DATA_DIR] = str(data_dir.resolve())
        security = ["--root-certificates", str(self.certs / certs.CA_CERT)] if self.certs else ["--insecure"]
        if key is not None:
            security += ["--auth-supernode-private-key", str(key)]
        cmd = [_bin("flower-supernode"), *security, "--superlink", f"127.0.0.1:{self.port}",
               "--port", str(free_port()), "--node-config", _pairs(node_config)]  # fmt: skip
        suffix = key.name if key is not None else str(partition_id)
        return self._spawn(cmd, self.flwr_home / f"supernode-{suffix}.log")

    def run(self, run_config: dict[str, str | bool]) -> int:
        """``flwr run`` the app on this deployment, streaming its logs; flwr's exit code."""
        app_dir = stage_app(self.flwr_home / "app")
        cmd = [_bin("flwr"), "run", str(app_dir), FEDERATION, "--stream",
               "--run-config", _pairs(run_config)]  # fmt: skip
        proc = subprocess.Popen(cmd, env=self.env, start_new_session=True)
        self.started.append(proc)
        return proc.wait()

    def _spawn(self, cmd: list[str], log_file: Path) -> subprocess.Popen:
        with log_file.open("w") as out:
            proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(proc)
        return proc


@contextmanager
def local_deployment(flwr_home: Path, certs_dir: Path | None) -> Iterator[LocalDeployment]:
    """A running SuperLink; everything started through the deployment stops when the block exits."""
    deployment = LocalDeployment(flwr_home, certs_dir)
    flwr_home.mkdir(parents=True, exist_ok=True)
    marker = launch_marker(deployment.launch_id)
    with reaper(deployment.launch_id):
        try:
            deployment.start_superlink()
            yield deployment
        finally:
            stop_marked(marker)  # the SuperLink, SuperNodes and their flwr-* children
            for proc in deployment.started:
                proc.wait()


def write_config(overrides: list[str], num_nodes: int, run_dir: Path) -> Path:
    """Compose, check and save the experiment config; the federation's size fills in what was not given."""
    precheck(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        raw = compose(config_name="config", overrides=overrides)
    given = {o.split("=", 1)[0].lstrip("+") for o in overrides}
    if "data.num_clients" not in given:
        raw.data.num_clients = num_nodes
    if "sim.clients_per_round" not in given:
        raw.sim.clients_per_round = min(raw.sim.clients_per_round, raw.data.num_clients)
    cfg = experiment.typed(raw)
    cfg.resume = None
    cfg.validate()
    cfg.tracking = tracking.with_store(cfg.tracking, tracking.OUTPUTS)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / record.CONFIG_FILE
    OmegaConf.save(OmegaConf.structured(cfg), config_file)
    return config_file


def deploy(run_dir: Path, num_nodes: int, data_dirs: list[Path], certs_dir: Path | None, overrides: list[str]) -> int:
    """Start the deployment, run the app once on it, stop everything; flwr's exit code."""
    config_file = write_config(overrides, num_nodes, run_dir)
    run_config = {experiment.RUN_CONFIG_FILE: str(config_file), experiment.RUN_DIR: str(run_dir)}
    with local_deployment(run_dir / ".flwr", certs_dir) as deployment:
        for i in range(num_nodes):
            key = certs_dir / certs.KEYS_DIR / certs.node_key_name(i) if certs_dir else None
            if key is not None:
                deployment.register(key.with_suffix(".pub"))
            deployment.start_supernode(i, key, data_dirs[i] if i < len(data_dirs) else None)
        return deployment.run(run_config)


def main(argv: list[str] | None = None) -> None:
    prog = "fedhyper-deploy" if Path(sys.argv[0]).name == "fedhyper-deploy" else "python -m simulations.deploy"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="SuperNodes to start (client ids 0..N-1)")
    parser.add_argument("--data-dir", type=Path, action="append", default=[], help="node i's own data (repeat)")
    parser.add_argument("--certs", type=Path, help="a directory made by simulations.certs (default: a new trial CA)")
    parser.add_argument("--insecure", action="store_true", help="no TLS and no node authentication")
    parser.add_argument("--run-dir", type=Path, help="outputs and logs (default: outputs/deploy/<time>)")
    parser.add_argument("overrides", nargs="*", help="experiment options, as for simulations.run")
    args = parser.parse_args(argv)
    if args.nodes < 1 or len(args.data_dir) > args.nodes:
        parser.error(f"--nodes={args.nodes} must be >= 1 and >= the {len(args.data_dir)} --data-dir given")
    if args.insecure and args.certs:
        parser.error("--insecure and --certs exclude each other")
    run_dir = (args.run_dir or Path("outputs/deploy") / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    try:
        certs_dir = None if args.insecure else certs.ensure(args.certs or run_dir / "certs", args.nodes)
        for d in args.data_dir:
            if not d.is_dir():
                raise ValueError(f"--data-dir {d} is not a directory")
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started from a background job
        code = deploy(run_dir, args.nodes, args.data_dir, certs_dir, args.overrides)
    except ValueError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"interrupted; every process the deployment started is stopped. Outputs in {run_dir}", file=sys.stderr)
        sys.exit(130)
    if code != 0 or not (run_dir / record.SUMMARY_FILE).exists():
        print(f"the run failed (flwr exit code {code}); logs in {run_dir} and {run_dir / '.flwr'}", file=sys.stderr)
        sys.exit(1)
    print((run_dir / record.SUMMARY_FILE).read_text())
    print(f"outputs in {run_dir}")


if __name__ == "__main__":
    main()
