"""Each benchmark still runs, at a tiny size; its figures are measured in benchmarks/, not here.

The benchmarks' simulations run on the in-process engine here (``FEDHYPER_BENCH_ENGINE``,
benchmarks/simrun.py): what is tested is each benchmark's own code, its steps, parsing and
arithmetic. Flower and Ray are tested where they are what is tested (tests/simulations,
tests/deployment), and by the many-clients benchmark below, which measures their processes.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.many_clients import title, watch
from benchmarks.simrun import ENGINE_ENV

REPO = Path(__file__).resolve().parents[2]


def run_module(*args: str, engine: str = "inprocess") -> str:
    env = {**os.environ, ENGINE_ENV: engine}
    cmd = [sys.executable, "-m", *args]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_hypernet_update_benchmark_reports_a_ratio():
    out = run_module("benchmarks.hypernet_update", "--clients", "3", "--target", "fmnist", "--repeats", "1")

    ratio = float(re.search(r"median ratio ([0-9.]+)x", out).group(1))
    assert ratio > 0


def test_round_overhead_benchmark_reports_both_ratios_at_steps_set_from_the_epochs():
    out = run_module(
        "benchmarks.round_overhead",
        *("--clients", "4", "--per-round", "2", "--rounds", "5", "--epochs", "0.4", "--subset", "2000"),
        *("--repeats", "1"),
    )

    examples, steps = map(int, re.search(r"median client's (\d+) training examples: (\d+) steps", out).groups())
    assert steps == math.ceil(0.4 * examples / 64) and f"2 clients x {steps} steps per round" in out
    match = re.search(r"flower/in-process = ([0-9.]+) \(same parallelism\), ([0-9.]+)", out)
    assert match and float(match.group(1)) > 0 and float(match.group(2)) > 0
    assert float(re.search(r"clients' handlers ([0-9.]+)s", out).group(1)) > 0


def test_server_memory_benchmark_reports_the_ratio():
    out = run_module("benchmarks.server_memory", "--clients", "10", "40", "--per-round", "4", "--rounds", "1")

    assert "10 clients (embedding dim 3)" in out and "40 clients (embedding dim 11)" in out  # 1 + N/4
    match = re.search(r"40 vs 10 clients: peak RSS ratio ([0-9.]+), state ratio ([0-9.]+)", out)
    assert match and float(match.group(1)) > 0 and float(match.group(2)) >= 1


def test_time_to_accuracy_benchmark_compares_at_the_same_client_updates():
    out = run_module("benchmarks.time_to_accuracy", "--tiny", "--target", "0.05")

    assert re.search(r"simulation: 5% after (\d+s|not reached)", out)
    assert re.search(r"one client per step: 5% after (\d+s|not reached)", out)
    # 6 rounds x 2 clients; the simulation evaluates every 3 rounds, the reference every 6 steps
    assert re.findall(r"after (\d+) client updates", out) == ["0", "6", "12"]
    assert re.search(r"at the same number of client updates \(12\): accuracy difference [+-][0-9.]+ points", out)


def test_fidelity_benchmark_runs_pfedhn_and_the_reference_at_the_same_budget_and_records_both(tmp_path):
    out_file = tmp_path / "fidelity.jsonl"

    out = run_module("benchmarks.fidelity", "--tiny", "--settings", "dirichlet", "--out", str(out_file),
                     "strategy.outer.weighting=uniform")  # fmt: skip

    (row,) = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert (row["setting"], row["updates"], row["per_round"]) == ("dirichlet", 4, 2)
    assert row["overrides"] == ["strategy.outer.weighting=uniform"]
    for key in ("simulation", "reference", "simulation_pooled", "reference_pooled"):
        assert 0 < row[key] <= 100
    assert row["difference"] == row["simulation"] - row["reference"]
    assert row["difference_pooled"] == row["simulation_pooled"] - row["reference_pooled"]
    assert f"difference {row['difference']:+.2f} points" in out


def test_the_fidelity_benchmarks_simulation_runs_pfedhn_for_the_updates_asked():
    from benchmarks.fidelity import experiment

    cfg = experiment("pfedhn", 1, updates=2000, per_round=10, steps=50, extra=[])

    assert (cfg.strategy.name, cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every) == (
        "pfedhn",
        200,
        10,
        200,
    )
    assert (cfg.data.num_clients, cfg.data.partition, cfg.strategy.local.steps, cfg.seed) == (50, "pathological", 50, 1)
    with pytest.raises(SystemExit, match="whole number of rounds"):
        experiment("pfedhn", 0, updates=25, per_round=10, steps=50, extra=[])


def test_gpu_benchmark_writes_its_figures_and_runs_the_cpu_parts_without_cuda(tmp_path):
    out_file = tmp_path / "gpu.json"

    run_module("benchmarks.gpu", "--tiny", "--out", str(out_file))

    figures = json.loads(out_file.read_text())
    assert figures["hypernet_update"]["cpu"][0]["clients"] == 3 and figures["hypernet_update"]["cpu"][0]["ratio"] > 0
    assert figures["round"]["flower_cpu_s"] > 0
    if not figures["machine"]["cuda"]:
        assert figures["round"]["flower_gpu_s"] is None and "cuda" not in figures["hypernet_update"]


@pytest.mark.engine  # starts real simulations
def test_many_clients_benchmark_reports_round_time_and_memory():
    # Smaller than its --tiny (40 clients): 4 rounds are the fewest that leave a steady-state round after warm-up;
    # one client process (2 CPUs each on these 2 cores) is enough to find and measure.
    out = run_module("benchmarks.many_clients", *("--clients", "8", "--per-round", "2", "--rounds", "4"),
                     *("--steps", "1", "--subset", "1000", "--client-cpus", "2"), engine="flower")  # fmt: skip

    assert re.search(r"8 clients, 2 a round, 4 rounds", out)
    assert float(re.search(r"steady-state round ([0-9.]+)s", out).group(1)) > 0
    match = re.search(r"ServerApp process (\d+) MB, largest of (\d+) client processes (\d+) MB", out)
    assert match and int(match.group(1)) > 0 and int(match.group(2)) == 1 and int(match.group(3)) > 0, out


def test_the_many_clients_watch_follows_a_client_process_after_it_loses_the_runs_mark(tmp_path):
    # A marked parent starts an unmarked child (as Ray's workers lose the mark to their titles) and exits;
    # the child grows by 200 MB only once its parent is gone.
    (tmp_path / "child.py").write_text("import time\ntime.sleep(2)\ngrown = bytearray(200 * 2**20)\ntime.sleep(1.5)\n")
    (tmp_path / "parent.py").write_text(
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, {str(tmp_path / 'child.py')!r}, 'ClientAppActor'], env={{}})\n"
        "time.sleep(1)\n"
    )
    home = tmp_path / ".flwr"
    marked = subprocess.Popen([sys.executable, tmp_path / "parent.py"], env={**os.environ, "FLWR_HOME": str(home)})
    run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(4)"])

    peaks = watch(run, home, every=0.2)

    assert marked.wait() == 0
    assert peaks["titles"]["python parent.py"][0] == 1 and peaks["titles"]["python child.py"][0] == 1
    assert peaks["client_processes"] == 1 and peaks["client_peak_rss_mb"] > 200
    assert peaks["polls"] >= 5


def test_the_many_clients_watch_names_a_process_by_its_ray_title_or_its_program():
    assert title("ray::client-actor-0:ClientAppActor.__init__") == "ray::client-actor-0:ClientAppActor"
    assert title("ray::ClientAppActor.run") == "ray::ClientAppActor"
    assert (
        title("/v/bin/python -m simulations.flwr_simulation --sweep-interval 0.01")
        == "python simulations.flwr_simulation"
    )
    assert title("/v/site-packages/ray/core/src/ray/raylet/raylet --raylet_socket_name=x") == "raylet"
    assert title("/v/bin/python -u /v/site-packages/ray/dashboard/agent.py --port 1") == "python agent.py"


def test_side_by_side_benchmark_times_each_process_and_the_machines_rate(tmp_path):
    out_file = tmp_path / "side.json"

    out = run_module("benchmarks.side_by_side", "--jobs", "2", "--rounds", "1", "--per-round", "2", "--steps", "2",
                     "--out", str(out_file))  # fmt: skip

    figures = json.loads(out_file.read_text())
    both = figures["side_by_side_2"]
    assert figures["alone_s_per_round"] > 0 and len(both["s_per_round"]) == 2 and min(both["s_per_round"]) > 0
    assert math.isclose(both["rounds_per_s"], 2 / both["median"])
    assert "2 side by side" in out
