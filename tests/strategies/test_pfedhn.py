import json

import pytest
import torch
from flwr.app import MessageType

from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from strategies import experiment, pfedhn
from strategies.app import client_config, run
from strategies.directory import ClientDirectory
from strategies.exchange import RoundMetrics
from strategies.loop import RoundLoop


def tiny_config(num_clients: int = 4, rounds: int = 3, subset: int = 2000) -> ExperimentConfig:
    cfg = ExperimentConfig(strategy=pfedhn.PFedHNConfig())
    cfg.data.num_clients, cfg.data.subset = num_clients, subset
    cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every = rounds, 2, 1
    cfg.strategy.local.steps = 10
    return cfg


@pytest.fixture
def directory_and_grid(in_process_grid):
    cfg = tiny_config()
    grid = in_process_grid(cfg.data.num_clients)
    directory = ClientDirectory()
    directory.discover(grid, client_config(cfg), expected=4, timeout=5)
    return cfg, directory, grid


def test_directory_maps_stable_client_ids_to_transport_node_ids(directory_and_grid):
    _, directory, grid = directory_and_grid

    assert directory.client_ids == [0, 1, 2, 3]
    for cid in directory.client_ids:
        assert grid.contexts[directory.node(cid)].node_config["partition-id"] == cid


def test_a_train_round_sends_each_sampled_client_its_own_weights(loop_on):
    loop = loop_on(tiny_config())

    loop.train(1, RoundMetrics())

    messages = [m for m in loop.grid.sent if m.metadata.message_type == MessageType.TRAIN]
    assert len(messages) == loop.sim.clients_per_round
    nodes = [m.metadata.dst_node_id for m in messages]
    assert len(set(nodes)) == len(nodes)
    first, second = (protocol.record_to_weights(m.content[protocol.ARRAYS]) for m in messages)
    assert set(first) == set(second)
    assert not torch.allclose(first["fc1.weight"], second["fc1.weight"])
    assert {m.content[protocol.CONFIG][protocol.SERVER_ROUND] for m in messages} == {1}


def test_a_reply_naming_another_nodes_client_is_left_out_and_counted(loop_on):
    forged = []

    def forge(reply):
        if reply.metadata.message_type == MessageType.TRAIN and not forged:
            real = int(reply.content[protocol.METRICS][protocol.CLIENT_ID])
            reply.content[protocol.METRICS][protocol.CLIENT_ID] = (real + 1) % 4
            forged.append(real)
        return reply

    loop = loop_on(tiny_config(), on_reply=forge)
    metrics = RoundMetrics()

    loop.train(1, metrics)

    assert loop.replies.rejected == {"foreign": 1}
    assert metrics.values["train_clients"] == loop.sim.clients_per_round - 1
    assert metrics.values["train_rejected"] == 1


def test_in_process_run_improves_accuracy_and_writes_the_record(in_process_grid, tmp_path):
    cfg = tiny_config(rounds=12, subset=4000)
    cfg.sim.eval_every = 4
    grid = in_process_grid(cfg.data.num_clients)

    summary = run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    assert summary.final_accuracy > summary.initial_accuracy + 0.2
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["strategy"] == "pfedhn" and on_disk["num_clients"] == 4 and on_disk["rounds"] == 12
    assert len(on_disk["per_client_accuracy"]) == 4
    assert on_disk["gpu_training_share"] == (1.0 if torch.cuda.is_available() else 0.0)  # in process: the GPU if any
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(13))
    assert all(0 <= r["accuracy"] <= 1 for r in rows if "accuracy" in r)


def test_evaluation_asks_the_same_seeded_sample_when_eval_clients_is_set(in_process_grid, tmp_path):
    cfg = tiny_config(num_clients=6, rounds=2)
    cfg.sim.eval_clients = 3
    grid = in_process_grid(cfg.data.num_clients)

    summary = run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    evaluated = [m.metadata.dst_node_id for m in grid.sent if m.metadata.message_type == "evaluate"]
    per_round = [evaluated[i : i + 3] for i in range(0, len(evaluated), 3)]
    assert len(evaluated) == 3 * 3  # rounds 0, 1 and 2, three clients each
    assert per_round[0] == per_round[1] == per_round[2]
    assert len(summary.per_client_accuracy) == 3


def test_an_evaluation_goes_out_in_chunks_and_gives_what_one_batch_gives(loop_on):
    """With eval_chunk=3, seven clients are asked in batches of 3, 3, 1: the server never holds more models."""
    cfg = tiny_config(num_clients=7)
    results = {}
    for chunk in (3, RoundLoop.eval_chunk):
        loop = loop_on(cfg)
        batches = []
        send = loop.grid.send_and_receive
        loop.grid.send_and_receive = lambda m, timeout=None, send=send, seen=batches: seen.append(len(m)) or send(m)
        loop.eval_chunk = chunk
        metrics = RoundMetrics()
        results[chunk] = loop.evaluate(0, loop.schedule.evaluated_clients(0), metrics)
        results[chunk]["batches"] = batches
        results[chunk]["sent"] = metrics.values["evaluate_bytes_sent"]

    chunked, whole = results[3], results[RoundLoop.eval_chunk]
    assert chunked.pop("batches") == [3, 3, 1] and whole.pop("batches") == [7]
    # The same models up to float rounding (generated 3 or 7 at once), the same bytes and clients.
    assert chunked == pytest.approx(whole, rel=1e-6)
    assert chunked["eval_clients"] == 7
