"""``python -m simulations.run`` as a user runs it: its checks, and a real Flower simulation on Ray (the shared one)."""

import os
import time

import pytest
import torch

from simulations.processes import marked_processes
from simulations.run import check
from tests.launcher import run_simulation
from tests.simulations.shared_run import FAULTY_PER_ROUND, NUM_CLIENTS, PER_ROUND, ROUNDS


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("strategy=nope", "strategy='nope' is unknown; choose one of ditto, fedavg, fedavg_ft"),
        ("data=cifar", "data='cifar' is unknown; choose one of cifar10, cifar100, femnist, fmnist"),
        ("sim.clients_per_round=100", "sim.clients_per_round=100 must be between 1 and data.num_clients=50"),
        ("sim.num_rounds=0", "sim.num_rounds=0 must be at least 1"),
        ("data.partition=shards", "data.partition='shards' is unknown"),
        ("strategy.local.lr=-1", "strategy.local.lr=-1.0 must be positive"),
        ("data.root=/nonexistent", "data.root=/nonexistent is not a directory"),
        ("sim.client_gpus=1.5", "sim.client_gpus=1.5 must be in [0, 1]"),
        ("sim.num_rounds=abc", "sim.num_rounds: Value 'abc' of type 'str' could not be converted to Integer"),
        ("sim.typo=3", "sim.typo: Key 'typo' not in 'SimConfig'"),
        ("strategy.outer.lr=0", "strategy.outer.lr=0.0 and strategy.outer.embedding_lr=None must be positive"),
        ("sim.min_replies=9", "sim.min_replies=9 must be between 1 and sim.clients_per_round=4"),
        ("faults.fraction=1.5", "faults.fraction=1.5 must be in [0, 1]"),
        ("faults.kind=explode", "faults.kind='explode' is unknown"),
        ("sim.checkpoint_every=-1", "sim.checkpoint_every=-1 must be >= 0"),
        ("sim.max_idle_rounds=-1", "sim.max_idle_rounds=-1 must be >= 0"),
        ("data.num_clients=0", "data.num_clients=0 must be at least 1"),
        ("data.alpha=0", "data.alpha=0.0 must be positive"),
        ("sim.eval_clients=51", "sim.eval_clients=51 must be between 0 (all) and 50"),
        ("sim.server_threads=-1", "sim.server_threads=-1 must be >= 0"),
        pytest.param(
            "sim.client_gpus=0.5",
            "sim.client_gpus=0.5 asks for a GPU and this machine has none",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
        pytest.param(
            "device=cuda",
            "device=cuda was asked for but this machine has no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_a_bad_option_is_refused_with_one_line_naming_it(override, message):
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        check([override])

    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["privacy.noise_multiplier=1"], "strategy.shared_model=true (the default) has no private mechanism"),
        (["hnet.input=noise"], "strategy=fedhyper generates from client embeddings, not hnet.input=noise"),
        (["hnet.input=data"], "not hnet.input=data: use strategy=pfedhn for hnet.input=noise, strategy=pefll for data"),
        (["hnet.init=hyperfan_out"], "set strategy.init=hyperfan_out (or strategy.init=null) instead"),
    ],
)
def test_fedhyper_options_the_other_sections_contradict_are_refused_before_an_engine_starts(overrides, message):
    with pytest.raises(ValueError) as err:
        check(["strategy=fedhyper", *overrides])

    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override", ["strategy=nope", "strategy.local.lr=-1"])
def test_the_command_exits_2_on_a_bad_option_before_any_engine_starts(tmp_path, override):
    marker = f"FEDHYPER_TEST_COMMAND={tmp_path}"  # inherited by everything the command starts
    result = run_simulation(tmp_path, override, timeout=120, env={**os.environ, **dict([marker.split("=", 1)])})

    assert result.returncode == 2
    assert result.stderr.startswith("config error:") and result.stderr.count("\n") == 1
    assert not (tmp_path / ".flwr").exists()  # no engine was started
    # The launch's Ray head, started with the command (simulations/ray_head.py), shuts its Ray down.
    deadline = time.monotonic() + 30
    while marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert marked_processes(marker) == []


def test_a_data_folder_with_malformed_files_is_refused_before_any_engine_starts(tmp_path, idx_dir):
    (idx_dir / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")

    result = run_simulation(tmp_path / "run", f"data.root={idx_dir}", timeout=120)

    assert result.returncode == 2
    assert "config error:" in result.stderr and "train-labels" in result.stderr
    assert not (tmp_path / "run" / ".flwr").exists()


@pytest.mark.engine
def test_a_flower_simulation_on_ray_trains_personalised_models(shared_run):
    summary, rows, replies = shared_run.summary, shared_run.rows, shared_run.replies

    assert summary["strategy"] == "pfedhn_pc" and summary["num_clients"] == NUM_CLIENTS and summary["rounds"] == ROUNDS
    assert len(summary["per_client_accuracy"]) == NUM_CLIENTS
    assert summary["final_accuracy"] > summary["initial_accuracy"] + 0.1
    assert summary["wall_time_s"] > 0 and 0 <= summary["best_accuracy"] <= 1
    assert summary["cpu_time_s"] is None  # the clients trained in Ray's workers, not the ServerApp's process
    assert (shared_run.run_dir / "config.yaml").exists()
    assert [r["round"] for r in rows] == list(range(ROUNDS + 1))
    # Every client was sent its own weights: the norms of what they received all differ.
    first_eval = {r["client-id"]: r["received-norm"] for r in replies if r["round"] == 0}
    assert sorted(first_eval) == list(range(NUM_CLIENTS))
    assert len(set(first_eval.values())) == NUM_CLIENTS
    trained = {r["client-id"] for r in replies if r["kind"] == "train"}
    assert len(trained) >= 3
    assert "summary:" in shared_run.result.stdout


@pytest.mark.engine
def test_a_simulation_attaches_to_a_running_ray_cluster_and_leaves_it_as_it_found_it(shared_run):
    cluster = shared_run.cluster

    assert shared_run.result.returncode == 0 and shared_run.summary["num_clients"] == NUM_CLIENTS
    # The simulation's driver ran on the cluster (a private Ray would log into a session of its own) ...
    assert cluster.drivers_added > 0
    # ... which stayed up after the run (the launch stopped its own processes, not the cluster's) until
    # the fixture stopped it.
    assert cluster.processes_after_run > 0
    assert shared_run.left_running == [] and cluster.left_running == []


@pytest.mark.engine
def test_clients_that_raise_are_left_out_and_kept_heads_persist_across_rounds_on_ray(shared_run):
    summary, rows, replies = shared_run.summary, shared_run.rows, shared_run.replies

    assert summary["rejected_replies"] == {"error": FAULTY_PER_ROUND * ROUNDS}
    assert [r.get("train_clients") for r in rows[1:]] == [PER_ROUND - FAULTY_PER_ROUND] * ROUNDS
    assert "left out (error)" in shared_run.output
    # pFedHN-PC's heads stay on the nodes: what a client kept after training is what it holds later.
    last_train = {r["client-id"]: r["kept-norm"] for r in replies if r["kind"] == "train"}
    final_eval = {r["client-id"]: r["kept-norm"] for r in replies if r["kind"] == "evaluate" and r["round"] == ROUNDS}
    assert len(last_train) >= 2 and all(last_train.values())
    assert all(final_eval[c] == pytest.approx(norm) for c, norm in last_train.items())
    assert all(r["kept-norm"] == 0 for r in replies if r["round"] == 0)
