"""Clients of different widths served by one hypernetwork (model.width_multipliers), end to end."""

import pytest
import torch
from flwr.app import ArrayRecord, MessageType

from clients.personal import PRIVATE
from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from fedhyper.models import ModelConfig, client_width
from strategies import experiment
from strategies.app import run
from strategies.exchange import RoundMetrics
from strategies.registry import get

WIDTHS = [0.5, 1.0]  # clients 0 and 2 at half width, 1 and 3 at full width


def tiny(name: str = "pfedhn", rounds: int = 12) -> ExperimentConfig:
    cfg = ExperimentConfig(strategy=get(name).config_cls(), model=ModelConfig(width_multipliers=list(WIDTHS)))
    cfg.data.num_clients, cfg.data.subset = 4, 4000
    cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every = rounds, 2, 4
    cfg.strategy.local.steps = 10
    return cfg


def received(grid, kind: str) -> dict[int, list[ArrayRecord]]:
    """What each client was sent in messages of ``kind``, by client id."""
    out: dict[int, list[ArrayRecord]] = {}
    for msg in grid.sent:
        if msg.metadata.message_type == kind:
            cid = grid.contexts[msg.metadata.dst_node_id].node_config[protocol.NODE_PARTITION_ID]
            out.setdefault(cid, []).append(msg.content[protocol.ARRAYS])
    return out


def test_a_pfedhn_run_with_two_widths_sends_narrow_clients_smaller_models_and_learns(in_process_grid, tmp_path):
    cfg = tiny()
    grid = in_process_grid(cfg.data.num_clients)

    summary = run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    sent = received(grid, MessageType.TRAIN)
    assert set(sent) == {0, 1, 2, 3}
    for cid, records in sent.items():
        channels = 8 if client_width(cfg.model, cid) == 0.5 else 16
        assert all(protocol.record_to_weights(r)["conv1.weight"].shape == (channels, 1, 5, 5) for r in records)
        assert all(protocol.record_to_weights(r)["fc3.weight"].shape[0] == 10 for r in records)
    half, full = sent[0][0].count_bytes(), sent[1][0].count_bytes()
    assert half < 0.4 * full  # a half-width model holds about a quarter of the weights
    assert summary.rejected_replies == {}
    assert summary.final_accuracy > summary.initial_accuracy + 0.2, summary
    assert set(summary.accuracy_by_width) == {"0.5", "1.0"}
    by_client = summary.per_client_accuracy
    assert summary.accuracy_by_width["0.5"] == pytest.approx((by_client[0] + by_client[2]) / 2)


def test_the_server_steps_from_replies_embedded_in_this_rounds_generated_weights(loop_on):
    # Outside a narrow client's slice the trained tensor must be exactly what the hypernet
    # generates at the step, so that Δ_i = 0 there and those outputs get no gradient from it.
    cfg = tiny()
    cfg.sim.clients_per_round = 4
    replies = []
    loop = loop_on(cfg, on_reply=lambda r: replies.append(r) or r)
    trainer, seen = loop.strategy.trainer, []

    def spy(ids, trained, num_examples, extra=None, *rest):
        seen.append((list(ids), trained, trainer.generate(ids, extra)))
        return step(ids, trained, num_examples, extra, *rest)

    step, trainer.step = trainer.step, spy
    loop.train(1, RoundMetrics())

    ((ids, trained, generated),) = seen
    assert ids == [0, 1, 2, 3]
    reply = {
        int(r.content[protocol.METRICS][protocol.CLIENT_ID]): protocol.record_to_weights(r.content[protocol.ARRAYS])
        for r in replies
        if r.metadata.message_type == MessageType.TRAIN
    }
    w, fresh = trained["fc1.weight"], generated["fc1.weight"]  # [4, 120, 512]
    assert torch.equal(w[0, :60, :256], reply[0]["fc1.weight"])
    assert torch.equal(w[0, 60:], fresh[0, 60:]) and torch.equal(w[0, :, 256:], fresh[0, :, 256:])
    assert torch.equal(w[1], reply[1]["fc1.weight"])
    assert not torch.equal(w[0, :60, :256], fresh[0, :60, :256])  # the narrow client did train


def test_pfedhn_pc_keeps_each_clients_head_at_its_width(in_process_grid, tmp_path):
    cfg = tiny("pfedhn_pc", rounds=2)
    cfg.sim.clients_per_round, cfg.sim.eval_every = 4, 2
    grid = in_process_grid(cfg.data.num_clients)

    summary = run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    assert summary.rejected_replies == {}
    for context in grid.contexts.values():
        cid = context.node_config[protocol.NODE_PARTITION_ID]
        head = protocol.record_to_weights(context.state.array_records[PRIVATE])
        assert set(head) == {"fc3.weight", "fc3.bias"}
        assert head["fc3.weight"].shape == (10, 42 if client_width(cfg.model, cid) == 0.5 else 84)
    assert all(
        "fc3.weight" not in protocol.record_to_weights(r)
        for rs in received(grid, MessageType.TRAIN).values()
        for r in rs
    )


@pytest.mark.parametrize("name", ["fedavg", "fedper", "pfedla", "local"])
def test_strategies_that_share_one_model_refuse_narrow_clients(name):
    cfg = ExperimentConfig(strategy=get(name).config_cls(), model=ModelConfig(width_multipliers=list(WIDTHS)))

    with pytest.raises(ValueError, match=f"model.width_multipliers.*strategy={name}"):
        cfg.validate()


def test_one_full_width_is_every_strategys_default():
    for name in ("fedavg", "pfedhn", "pfedhn_pc"):
        ExperimentConfig(strategy=get(name).config_cls(), model=ModelConfig(width_multipliers=[1.0])).validate()
