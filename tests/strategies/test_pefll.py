"""PeFLL (hnet.input=data): descriptors from the clients' data, ψ trained with the hypernetwork."""

import json
import math

import pytest
import torch
from flwr.app import ArrayRecord, MessageType
from omegaconf import OmegaConf

from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from strategies import experiment, pfedhn, pfedhn_pc, registry
from strategies.app import run
from strategies.directory import ClientDirectory
from strategies.exchange import RoundMetrics
from strategies.pefll import PeFLL, PeFLLConfig


def tiny_config(num_clients: int = 4, rounds: int = 3, subset: int = 2000) -> ExperimentConfig:
    cfg = ExperimentConfig(strategy=pfedhn.PFedHNConfig())
    cfg.hnet.input = "data"
    cfg.data.num_clients, cfg.data.subset = num_clients, subset
    cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every = rounds, 2, rounds
    cfg.strategy.local.steps = 10
    return cfg


def sent(grid, kind: str) -> list:
    return [m for m in grid.sent if m.metadata.message_type == kind]


def test_input_data_builds_pefll_for_pfedhn_and_pfedhn_pc():
    cfg = tiny_config()
    directory = ClientDirectory()
    for cid in range(cfg.data.num_clients):
        directory.register(cid, 100 + cid, 10)

    full, body = pfedhn.build(cfg, directory), pfedhn_pc.build(cfg, directory)

    assert isinstance(full, PeFLL) and isinstance(body, PeFLL)
    assert not full.trainer.hnet.conditioner.private
    assert set(body.trainer.hnet.target_shapes) < set(full.trainer.hnet.target_shapes)  # the head stays home
    assert full.psi.out.out_features == cfg.hnet.resolved_embedding_dim(cfg.data.num_clients)


def test_psi_and_its_optimizer_are_checkpointed():
    cfg = tiny_config()
    directory = ClientDirectory()
    for cid in range(cfg.data.num_clients):
        directory.register(cid, 100 + cid, 10)
    first, second = pfedhn.build(cfg, directory), pfedhn.build(cfg, directory)
    for p in first.psi.parameters():
        p.grad = torch.ones_like(p)
    first.psi_optimizer.step()  # moves ψ and fills the momentum buffers

    second.load_state_dict(first.state_dict())

    for a, b in zip(first.psi.parameters(), second.psi.parameters(), strict=True):
        assert torch.equal(a, b)
    assert (
        second.psi_optimizer.state_dict()["state"].keys() == first.psi_optimizer.state_dict()["state"].keys() != set()
    )


class AnsweringCalls:
    """An Exchange whose every client answers a descriptor-gradient query with ones for each ψ tensor."""

    def __init__(self, psi: torch.nn.Module) -> None:
        self.shapes = {n: p.shape for n, p in psi.named_parameters()}

    def ask(self, kind, contents, check):
        assert kind == protocol.DESCRIPTOR_GRAD_QUERY
        answer = type("Answer", (), {"weights": {n: torch.ones(s) for n, s in self.shapes.items()}})
        return {cid: answer for cid in contents}


def test_psi_decays_with_phis_cosine_schedule():
    directory = ClientDirectory()
    for cid in range(4):
        directory.register(cid, 100 + cid, 10)
    moves = {}
    for schedule in ("constant", "cosine"):
        cfg = tiny_config(rounds=4)
        cfg.strategy.outer.schedule = schedule
        strategy = pfedhn.build(cfg, directory)
        before = [p.detach().clone() for p in strategy.psi.parameters()]
        psi_sent = protocol.weights_to_record(strategy.psi.state_dict())
        grad_v = torch.zeros(2, strategy.trainer.hnet.conditioner.extra_dim)
        strategy.step_psi([0, 1], grad_v, {0: 10, 1: 10}, psi_sent, AnsweringCalls(strategy.psi), server_round=3)
        moves[schedule] = [p.detach() - b for p, b in zip(strategy.psi.parameters(), before, strict=True)]

    for cosine, constant in zip(moves["cosine"], moves["constant"], strict=True):  # round 3 of 4: half the rate
        assert constant.abs().sum() > 0
        torch.testing.assert_close(cosine, 0.5 * constant)


def test_a_client_whose_descriptor_is_not_finite_sits_the_round_out(loop_on):
    cfg = tiny_config()
    cfg.sim.clients_per_round = 4
    dim = cfg.hnet.resolved_embedding_dim(cfg.data.num_clients)

    def poison(reply):
        if reply.metadata.message_type == protocol.DESCRIPTOR_QUERY:
            if int(reply.content[protocol.METRICS][protocol.CLIENT_ID]) == 0:
                reply.content[protocol.DESCRIPTOR] = ArrayRecord({protocol.DESCRIPTOR: torch.full((dim,), math.nan)})
        return reply

    loop = loop_on(cfg, on_reply=poison)
    metrics = RoundMetrics()

    loop.train(1, metrics)

    trained = [m for m in loop.grid.sent if m.metadata.message_type == MessageType.TRAIN]
    assert sorted(loop.strategy.directory.client_of(m.metadata.dst_node_id) for m in trained) == [1, 2, 3]
    assert loop.replies.rejected == {"nonfinite": 1}  # no timeout counted for client 0 as well
    assert metrics.values["train_descriptor_rejected"] == 1 and metrics.values["train_rejected"] == 0
    assert metrics.values["train_clients"] == metrics.values["psi_clients"] == 3


def test_strategy_pefll_is_registered_with_its_own_config_and_reads_client_data():
    cfg = experiment.typed(OmegaConf.create({"strategy": {"name": "pefll"}, "data": {"num_clients": 4}}))
    directory = ClientDirectory()
    for cid in range(cfg.data.num_clients):
        directory.register(cid, 100 + cid, 10)

    strategy = registry.build(cfg, directory)

    assert isinstance(cfg.strategy, PeFLLConfig) and cfg.hnet.input == "data"
    assert isinstance(strategy, PeFLL) and strategy.name == "pefll"
    with pytest.raises(ValueError, match="strategy=pefll needs hnet.input=data"):
        experiment.typed(OmegaConf.create({"strategy": {"name": "pefll"}, "hnet": {"input": "noise"}}))


def test_a_run_improves_trains_psi_and_serves_novel_clients_without_training(in_process_grid, tmp_path):
    cfg = tiny_config(num_clients=6, rounds=12, subset=4000)
    cfg.novel_clients = 2  # held out of training: PeFLL describes them and generates, nothing more
    grid = in_process_grid(cfg.data.num_clients)

    summary = run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    assert summary.final_accuracy > summary.initial_accuracy + 0.1, summary
    assert (tmp_path / "embeddings.png").stat().st_size > 10_000  # the clients' descriptors, projected
    client_of = {node: ctx.node_config[protocol.NODE_PARTITION_ID] for node, ctx in grid.contexts.items()}
    # ψ moved: the ψ the first round's descriptors came from is not the last round's.
    described = sent(grid, protocol.DESCRIPTOR_QUERY)
    first_psi = protocol.record_to_weights(described[0].content[protocol.ARRAYS])
    last_psi = protocol.record_to_weights(described[-1].content[protocol.ARRAYS])
    assert not torch.allclose(first_psi["features.weight"], last_psi["features.weight"])
    assert len(sent(grid, protocol.DESCRIPTOR_GRAD_QUERY)) == cfg.sim.num_rounds * cfg.sim.clients_per_round
    # The novel clients never trained, yet each was sent a model of its own.
    novel = summary.novel_clients
    assert summary.rounds == cfg.sim.num_rounds  # no rounds of their own after training
    training = sent(grid, "train") + sent(grid, protocol.DESCRIPTOR_GRAD_QUERY)
    trained = {client_of[m.metadata.dst_node_id] for m in training}
    assert len(novel) == 2 and not trained & set(novel)
    last_eval = {client_of[m.metadata.dst_node_id]: m for m in sent(grid, "evaluate")}
    a, b = (protocol.record_to_weights(last_eval[c].content[protocol.ARRAYS]) for c in novel)
    assert not torch.allclose(a["fc1.weight"], b["fc1.weight"])
    assert 0 <= summary.novel_accuracy <= 1
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["psi_clients"] == cfg.sim.clients_per_round for r in rows if r["round"] > 0)
    assert all(r["train_descriptor_bytes_sent"] > 0 and r["train_descriptor_grad_bytes_received"] > 0 for r in rows[1:])
