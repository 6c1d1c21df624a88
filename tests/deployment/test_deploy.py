"""Real clients on Flower's deployment engine: TLS, SuperNode authentication, each node's own data."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from simulations import certs
from simulations.deploy import LocalDeployment, local_deployment, write_config
from simulations.launch import run_processes
from simulations.processes import LAUNCH_ENV, START_UP, flower_env
from strategies import experiment

REPO = Path(__file__).resolve().parents[2]
TRAIN_SIZES = (96, 64)  # different per node: a reply's example count shows which data it trained on


def write_site(directory: Path, n_train: int, classes: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", 32)):
        y = rng.choice(classes, size=n)
        x = rng.integers(0, 64, size=(n, 28, 28), dtype=np.uint8) + (y[:, None, None] * 19).astype(np.uint8)
        np.savez(directory / f"{split}.npz", x=x, y=y)
    return directory


@pytest.fixture
def another_launch():
    """``another_launch(flwr_home)``: a process of another launch in that folder, as a deployment resumed there."""
    started = []

    def start(flwr_home: Path) -> subprocess.Popen:
        env = {**os.environ, "FLWR_HOME": str(flwr_home), LAUNCH_ENV: "another-launch"}
        started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env))
        return started[-1]

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.mark.engine
def test_two_authenticated_supernodes_with_their_own_data_train_pfedhn_over_tls(tmp_path, another_launch):
    keys = certs.ensure(tmp_path / "certs", num_nodes=2)
    stranger = certs.make_node_key(keys, "stranger")  # a valid key that nobody registered
    sites = [write_site(tmp_path / f"site{i}", n, (2 * i, 2 * i + 1), i) for i, n in enumerate(TRAIN_SIZES)]
    run_dir = tmp_path / "run"
    # One round: each node's ClientApp is a process of its own per message (Flower's deployment), the costly part.
    config_file = write_config(["sim.num_rounds=1", "sim.eval_every=1", "strategy.local.steps=5"], 2, run_dir)

    other = another_launch(run_dir / ".flwr")  # stopping this deployment must leave it running
    with local_deployment(run_dir / ".flwr", keys) as deployment:
        for i, site in enumerate(sites):
            key = keys / certs.KEYS_DIR / certs.node_key_name(i)
            deployment.register(key.with_suffix(".pub"))
            deployment.start_supernode(i, key, site)
        refused = deployment.start_supernode(2, stranger, sites[0])
        refused_code = refused.wait(timeout=120)
        code = deployment.run({experiment.RUN_CONFIG_FILE: str(config_file), experiment.RUN_DIR: str(run_dir)})
        assert len(run_processes(run_dir / ".flwr")) > 1  # the engine was up: the check after the block can fail
    left = run_processes(run_dir / ".flwr")

    assert refused_code != 0
    assert "Failed to activate SuperNode" in (run_dir / ".flwr" / "supernode-stranger.log").read_text()
    assert code == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_clients"] == 2 and summary["rounds"] == 1 and summary["rejected_replies"] == {}
    replies = [json.loads(line) for line in (run_dir / "clients.jsonl").read_text().splitlines()]
    sent = {(r["kind"], r["round"], r["client-id"]): r for r in replies}
    assert sorted(k for k in sent if k[0] == "train") == [("train", 1, 0), ("train", 1, 1)]
    assert all(sent[("train", 1, cid)]["num-examples"] == TRAIN_SIZES[cid] for cid in (0, 1))  # each its own data
    for kind, rnd in (("evaluate", 0), ("train", 1), ("evaluate", 1)):  # each node was sent its own generated weights
        assert sent[(kind, rnd, 0)]["received-norm"] != pytest.approx(sent[(kind, rnd, 1)]["received-norm"])
    for cid in (0, 1):  # and the hypernetwork learned from the round: what it generates for each node moved
        assert sent[("evaluate", 1, cid)]["received-norm"] != pytest.approx(sent[("train", 1, cid)]["received-norm"])
    assert left == [other.pid]  # every process of the deployment stopped, and only those


def test_a_deployment_keeps_flowers_poll_where_a_simulation_launch_polls_faster(tmp_path, monkeypatch):
    poll = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
    monkeypatch.delenv(poll, raising=False)
    deployment = LocalDeployment(tmp_path / ".flwr", certs=None)

    assert poll not in deployment.env  # Flower's 1 s, in each of its SuperExecs for as long as it runs
    assert deployment.env[LAUNCH_ENV] == deployment.launch_id
    assert flower_env(tmp_path, "local")[poll] == START_UP[poll] == "0.2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--insecure", "--certs", "somewhere"], "--insecure and --certs exclude each other"),
        (["--nodes", "1", "--data-dir", "a", "--data-dir", "b"], "--nodes=1 must be >= 1 and >= the 2 --data-dir"),
        (["--insecure", "--data-dir", "/nonexistent"], "--data-dir /nonexistent is not a directory"),
        (["--insecure", "sim.num_rounds=0"], "sim.num_rounds=0 must be at least 1"),
    ],
)
def test_a_bad_deployment_option_exits_2_before_any_process_starts(tmp_path, args, message):
    cmd = [sys.executable, "-m", "simulations.deploy", "--run-dir", str(tmp_path), *args]

    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)

    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / ".flwr").exists()


@pytest.mark.engine
def test_sigterm_stops_every_process_the_deployment_started(tmp_path):
    # One node: every message starts a flwr-clientapp process (about 6 s of CPU each), and what is tested is that
    # SIGTERM stops the SuperLink, the SuperNode and whatever they started.
    cmd = [sys.executable, "-m", "simulations.deploy", "--insecure", "--nodes", "1", "--run-dir", str(tmp_path),
           "sim.num_rounds=100", "strategy.local.steps=5", "data.subset=2000"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "metrics.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert (tmp_path / "metrics.jsonl").exists(), "no round 0 within 240 s"
        assert len(run_processes(tmp_path / ".flwr")) >= 2  # the SuperLink and the SuperNode at least

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()

    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert run_processes(tmp_path / ".flwr") == []
