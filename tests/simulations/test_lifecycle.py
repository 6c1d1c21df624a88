"""A run that is interrupted or killed leaves no process behind, and resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from simulations import inprocess
from simulations.processes import (
    LAUNCH_ENV,
    SERVER_ENV,
    launch_marker,
    launch_processes,
    new_launch_id,
    reaper,
    record_launch,
    run_processes,
    server_processes,
    stop_launch,
    stop_run_processes,
)
from simulations.run import check
from tests.launcher import REPO, processes_left, start_simulation

SMALL = [
    "data.num_clients=4",
    "data.subset=3000",
    "sim.clients_per_round=2",
    "sim.eval_every=2",
    "strategy.local.steps=5",
    "sim.client_cpus=2",  # one client actor on these 2 cores: what is tested is the launch's processes
    "seed=2",
]


def processes_of(run_dir: Path) -> list[int]:
    return run_processes(run_dir / ".flwr")


def wait_for_rounds(run_dir: Path, rounds: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early with code {proc.returncode}")
        if metrics.exists() and len(metrics.read_text().splitlines()) > rounds:
            return
        time.sleep(0.2)
    raise AssertionError(f"no round {rounds} within {timeout}s")


def start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    return start_simulation(run_dir, *SMALL, *overrides)


@pytest.mark.engine
def test_sigterm_stops_every_process_the_run_started(tmp_path):
    # SIGTERM (a scheduler, `kill`) takes Ctrl-C's path: the launcher turns it into KeyboardInterrupt, whose
    # clean-up stops the launch's processes. SIGINT itself is checked below without an engine.
    proc = start(tmp_path, "sim.num_rounds=300")
    wait_for_rounds(tmp_path, 1, proc)
    assert processes_of(tmp_path)  # the engine is up: the check below can fail

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert processes_left(tmp_path) == []


def test_ctrl_c_interrupts_the_launcher_even_when_started_with_sigint_ignored(tmp_path):
    """A shell's background job starts with SIGINT ignored; the launcher handles it anyway, as Ctrl-C."""
    launcher = (
        "import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); from simulations import run; "
        "run.run_app = lambda spec, config, head: (print('engine up', flush=True), time.sleep(120)); "
        f"sys.argv = ['run', 'sim.num_rounds=1', 'hydra.run.dir={tmp_path}']; run.cli()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "engine up\n"  # inside run_app: the signal handlers are set

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err


def launch_ids(run_dir: Path) -> set[str]:
    """The launch ids that the live processes of ``run_dir`` carry."""
    ids = set()
    for pid in processes_of(run_dir):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ids |= {e.split(b"=", 1)[1].decode() for e in env if e.startswith(f"{LAUNCH_ENV}=".encode())}
    return ids


@pytest.mark.engine
def test_a_killed_run_resumed_at_once_in_its_folder_ends_as_an_uninterrupted_one(tmp_path):
    whole_dir, split_dir = tmp_path / "whole", tmp_path / "split"
    num_rounds, every = 8, 2  # long enough to be killed mid-way
    rounds = [f"sim.num_rounds={num_rounds}", f"sim.checkpoint_every={every}"]
    split = start(split_dir, *rounds, "tracking=tensorboard")  # tracked: the resumed run must continue its record
    # The uninterrupted run, on the in-process engine (the same ServerApp and ClientApp, no transport): the
    # killed-and-resumed Flower/Ray run must end exactly as it does, so the two engines agree too.
    inprocess.run_experiment(check([*SMALL, *rounds]), whole_dir)
    wait_for_rounds(split_dir, every + 1, split)  # killed after round 3: resumed from round 2's checkpoint
    (killed,) = launch_ids(split_dir)
    # A process of the killed launch slow to stop (as flwr-simulation's exit handlers or Ray's can be): its
    # watchdog waits out its grace (10 s) and then SIGKILLs what it finds, while the resumed run starts.
    ignore_term = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    )
    straggler = subprocess.Popen(
        [sys.executable, "-c", ignore_term],
        env={**os.environ, "FLWR_HOME": str(split_dir / ".flwr"), LAUNCH_ENV: killed},
        stdout=subprocess.PIPE,
    )
    straggler.stdout.readline()  # SIGTERM is ignored from here on: a TERM before this line would have ended it
    split.send_signal(signal.SIGKILL)
    split.wait()
    # Resumed at once, while the killed launch's watchdog is still stopping its processes in the same folder.
    resumed = subprocess.run(
        [sys.executable, "-m", "simulations.run", f"resume={split_dir}", f"hydra.run.dir={split_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )

    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # The engine followed its launcher down: the watchdog's TERM, its grace, then KILL (≈ 20 s with the
    # ServerApp's own grace), which a resumed run that ends sooner does not wait for.
    assert straggler.wait(timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 15
    while launch_processes(killed) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert launch_processes(killed) == []
    a = json.loads((whole_dir / "summary.json").read_text())
    b = json.loads((split_dir / "summary.json").read_text())
    assert b["rejected_replies"] == {}  # no client was stopped under a running ServerApp (stop_launch's order)
    assert b["per_client_accuracy"] == a["per_client_accuracy"]
    assert b["final_accuracy"] == a["final_accuracy"] and b["rounds"] == num_rounds
    assert b["message_sweep"] == "fedhyper"  # the launcher's wrapper installed it
    assert (a["engine"], b["engine"]) == ("inprocess", "flower")  # each names what ran it: a grid keeps them apart
    losses = [json.loads(line).get("train_loss") for line in (split_dir / "metrics.jsonl").read_text().splitlines()]
    assert losses == [
        json.loads(line).get("train_loss") for line in (whole_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert processes_left(split_dir) == []
    # TensorBoard on the real engine: round 3, recorded before the kill, is logged again by the resumed
    # process; the reader must see every round's loss exactly once, with the values metrics.jsonl holds.
    tracked = EventAccumulator(str(split_dir), size_guidance={"scalars": 0})
    tracked.Reload()
    rows = [json.loads(line) for line in (split_dir / "metrics.jsonl").read_text().splitlines()]
    expected = [(r["round"], r["train_loss"]) for r in rows if "train_loss" in r]
    assert [step for step, _ in expected] == list(range(1, num_rounds + 1))
    assert [(e.step, e.value) for e in tracked.Scalars("train_loss")] == [
        (step, pytest.approx(value, rel=1e-6)) for step, value in expected
    ]


def test_a_launchs_watchdog_stops_its_own_processes_only_not_another_launchs_in_the_same_folder(tmp_path):
    def process_of(launch: str) -> subprocess.Popen:
        env = {**os.environ, "FLWR_HOME": str(tmp_path / ".flwr"), LAUNCH_ENV: launch}
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)

    killed, resumed = process_of("killed-launch"), process_of("resumed-launch")
    try:
        with reaper("killed-launch"):
            pass  # the launcher is gone: its watchdog stops what carries its id

        assert killed.wait(timeout=30) == -signal.SIGTERM
        assert resumed.poll() is None and launch_processes("resumed-launch") == [resumed.pid]
    finally:
        resumed.kill()


def test_a_run_folder_finds_and_stops_the_processes_of_every_launch_recorded_in_it(tmp_path):
    """A launch's Ray starts before its folder is known: its processes carry the launch's id, not FLWR_HOME."""
    folder = tmp_path / ".flwr"

    def process_of(launch: str) -> subprocess.Popen:
        env = {**os.environ, LAUNCH_ENV: launch}
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)

    recorded, elsewhere = process_of("recorded-launch"), process_of("launch-elsewhere")
    try:
        assert recorded.pid not in run_processes(folder)
        record_launch(folder, "recorded-launch")
        assert run_processes(folder) == [recorded.pid]

        stop_run_processes(folder, grace=5.0)

        assert recorded.wait(timeout=10) == -signal.SIGTERM
        assert elsewhere.poll() is None
    finally:
        recorded.kill()
        elsewhere.kill()


def test_a_launch_stops_its_server_before_its_clients(tmp_path):
    """A client stopped while the ServerApp still ran would be recorded as a failed reply, and its round kept
    (a killed run once resumed from a checkpoint holding such rounds)."""
    launch_id = new_launch_id()
    client = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, LAUNCH_ENV: launch_id}
    )
    on_term = (  # the server, told to stop, says after 0.5 s whether its client still runs (not a zombie)
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(0.5)\n"
        f"    state = open('/proc/{client.pid}/stat').read().rsplit(')', 1)[1].split()[0]\n"
        f"    open({str(tmp_path / 'seen')!r}, 'w').write(state)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\nprint(flush=True)\ntime.sleep(60)\n"
    )
    # The server's own children (the Ray Flower starts when the launch's could not) inherit its mark.
    server = subprocess.Popen(
        [sys.executable, "-c", on_term],
        env={**os.environ, LAUNCH_ENV: launch_id, SERVER_ENV: "1"},
        stdout=subprocess.PIPE,
    )
    server.stdout.readline()  # its handler is set
    try:
        assert server_processes(launch_id) == [server.pid]

        stop_launch(launch_id, grace=5.0)

        assert (tmp_path / "seen").read_text() in ("S", "R")  # sleeping or running, not stopped with it
        assert server.wait(timeout=10) == 0 and client.wait(timeout=10) == -signal.SIGTERM
    finally:
        server.kill()
        client.kill()


def test_resuming_from_a_directory_without_a_checkpoint_is_a_config_error(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 0\n")

    result = subprocess.run(
        [sys.executable, "-m", "simulations.run", f"resume={tmp_path}"], cwd=REPO, capture_output=True, text=True
    )

    assert result.returncode == 2
    assert "no checkpoint" in result.stderr


@pytest.mark.engine
def test_a_run_that_ends_or_fails_leaves_nothing_running(tmp_path, request):
    # 12 examples for 4 clients: the clients cannot even describe themselves, the ServerApp gives up.
    failed = start(tmp_path / "bad", "data.subset=12")
    ended = request.getfixturevalue("shared_run")  # a run that ended well, started (once) side by side if not yet
    _, failed_err = failed.communicate(timeout=600)

    assert ended.result.returncode == 0 and ended.left_running == []
    assert failed.returncode == 1 and "the run failed" in failed_err
    assert processes_left(tmp_path / "bad", timeout=10) == []


def test_a_process_found_once_is_stopped_even_after_it_loses_its_launchs_marker():
    """Ray's agents rewrite their environment for their titles; once their parent (the raylet) dies,
    nothing marks them as the launch's any more, and they may outlive a SIGTERM."""
    from simulations.processes import alive, stop_marked

    launch_id = new_launch_id()
    child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    parent = (
        "import subprocess, sys, time; "
        f"c = subprocess.Popen([sys.executable, '-c', {child!r}], env={{}}, stdout=subprocess.PIPE); "
        "c.stdout.readline(); print(c.pid, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], env={**os.environ, LAUNCH_ENV: launch_id}, stdout=subprocess.PIPE, text=True
    )
    orphan = int(proc.stdout.readline())  # unmarked, ignoring SIGTERM; only its parent carries the marker
    assert launch_processes(launch_id) == sorted([proc.pid, orphan])

    stop_marked(launch_marker(launch_id), grace=1.0)

    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert not alive(orphan)  # SIGKILLed after the grace, though an orphan without the marker by then
