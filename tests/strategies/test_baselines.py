"""What the baselines promise: FedAvg is SGD on pooled data, private parts stay private."""

from unittest import mock

import pytest
import torch
from flwr.app import MessageType
from torch import nn

from clients import personal, runtime
from clients.personal import PRIVATE
from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from fedhyper.models import apply
from strategies import experiment
from strategies.app import client_config, run
from strategies.directory import ClientDirectory
from strategies.exchange import RoundMetrics
from strategies.registry import get


def configured(name: str, num_clients: int = 3, subset: int = 600) -> ExperimentConfig:
    cfg = ExperimentConfig(strategy=get(name).config_cls())
    cfg.data.num_clients, cfg.data.subset, cfg.data.partition = num_clients, subset, "iid"
    cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every = 3, num_clients, 3
    return cfg


def full_batch_sgd(cfg: ExperimentConfig, steps: int) -> None:
    local = cfg.strategy.local
    local.steps, local.batch_size, local.lr, local.momentum, local.weight_decay = steps, 10_000, 0.05, 0.0, 0.0


def fedavg_rounds(cfg: ExperimentConfig, loop_on, rounds: int) -> dict[str, torch.Tensor]:
    loop = loop_on(cfg)
    for r in range(1, rounds + 1):
        loop.train(r, RoundMetrics())
    return loop.strategy.weights


def centralised_sgd(cfg: ExperimentConfig, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict[str, torch.Tensor]:
    start = get("fedavg").build(cfg, ClientDirectory()).weights
    params = {n: w.clone().requires_grad_(True) for n, w in start.items()}
    model = runtime.target_model(client_config(cfg), (1, 28, 28), 10)
    opt = torch.optim.SGD(params.values(), lr=cfg.strategy.local.lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(apply(model, params, x), y).backward()
        opt.step()
    return {n: p.detach() for n, p in params.items()}


def test_fedavg_with_identical_clients_matches_centralised_sgd_on_the_pooled_data(loop_on, monkeypatch):
    cfg = configured("fedavg")
    full_batch_sgd(cfg, steps=4)
    real = runtime.client_data
    monkeypatch.setattr(
        runtime, "client_data", lambda config, cid, node_config=None: real(config, 0)
    )  # every client holds client 0's data
    data, _, _ = real(client_config(cfg), 0)
    pooled_x, pooled_y = data.x_train.repeat(3, 1, 1, 1), data.y_train.repeat(3)

    federated = fedavg_rounds(cfg, loop_on, rounds=3)
    central = centralised_sgd(cfg, pooled_x, pooled_y, steps=12)

    moved = sum(
        float((central[n] - w).abs().max()) for n, w in get("fedavg").build(cfg, ClientDirectory()).weights.items()
    )
    assert moved > 1e-2  # the comparison is not between two untrained models
    for name, w in federated.items():
        torch.testing.assert_close(w, central[name], atol=2e-5, rtol=1e-4)


def test_fedavg_with_one_full_batch_step_is_sgd_on_the_pooled_data_of_different_clients(loop_on):
    cfg = configured("fedavg")
    full_batch_sgd(cfg, steps=1)
    parts = [runtime.client_data(client_config(cfg), c)[0] for c in range(3)]
    pooled_x = torch.cat([p.x_train for p in parts])
    pooled_y = torch.cat([p.y_train for p in parts])

    federated = fedavg_rounds(cfg, loop_on, rounds=3)
    central = centralised_sgd(cfg, pooled_x, pooled_y, steps=3)

    for name, w in federated.items():
        torch.testing.assert_close(w, central[name], atol=2e-5, rtol=1e-4)


def arrays_in(message) -> set[str]:
    return {n for record in message.content.array_records.values() for n in record}


@pytest.mark.parametrize(("name", "private"), [("pfedhn_pc", "fc3"), ("fedper", "fc3"), ("lg_fedavg", "conv1")])
def test_a_private_part_never_reaches_the_server_and_trains_on_the_client(name, private, in_process_grid, tmp_path):
    cfg = configured(name, num_clients=4, subset=1000)
    cfg.data.partition = "pathological"
    cfg.strategy.local.steps = 5
    replies = []
    grid = in_process_grid(4, on_reply=lambda reply: replies.append(reply) or reply)

    run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    assert replies and grid.sent
    assert not any(n.startswith(private + ".") for r in replies for n in arrays_in(r))
    assert not any(n.startswith(private + ".") for m in grid.sent for n in arrays_in(m))
    kept = [protocol.record_to_weights(c.state.array_records[PRIVATE]) for c in grid.contexts.values()]
    assert all(any(n.startswith(private + ".") for n in k) for k in kept)
    first = kept[0][f"{private}.weight"]
    assert any(not torch.equal(first, k[f"{private}.weight"]) for k in kept[1:])  # each client its own


def test_local_training_sends_no_tensors_either_way(in_process_grid, tmp_path):
    cfg = configured("local", num_clients=3)
    cfg.strategy.local.steps = 5
    replies = []
    grid = in_process_grid(3, on_reply=lambda reply: replies.append(reply) or reply)

    summary = run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    assert not any(arrays_in(m) for m in grid.sent) and not any(arrays_in(r) for r in replies)
    assert summary.final_accuracy > summary.initial_accuracy


def test_ditto_keeps_its_personal_model_on_the_client_and_evaluates_it(in_process_grid, tmp_path):
    cfg = configured("ditto", num_clients=3)
    cfg.strategy.local.steps, cfg.strategy.personal_steps = 5, 5
    grid = in_process_grid(3)

    run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    personal = [c.state.array_records["ditto-personal"] for c in grid.contexts.values()]
    sent = [protocol.record_to_weights(m.content[protocol.ARRAYS]) for m in grid.sent[-3:]]
    for record, global_model in zip(personal, sent, strict=True):
        weights = protocol.record_to_weights(record)
        assert set(weights) == set(global_model)
        assert not torch.equal(weights["fc1.weight"], global_model["fc1.weight"])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_training_rounds_get_the_scheduled_local_lr_and_evaluation_keeps_local_lr(in_process_grid, tmp_path, schedule):
    cfg = configured("fedavg_ft", num_clients=2)
    cfg.sim.num_rounds, cfg.sim.eval_every = 4, 2
    cfg.strategy.local.steps, cfg.strategy.local.lr, cfg.strategy.local.lr_schedule = 2, 0.08, schedule
    grid = in_process_grid(2)

    run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    def lrs(kind: str) -> dict[int, float]:
        configs = [m.content[protocol.CONFIG] for m in grid.sent if m.metadata.message_type == kind]
        return {c[protocol.SERVER_ROUND]: c[protocol.LOCAL_LR] for c in configs}

    cosine = {1: 0.08, 2: 0.08 * (1 + 2**-0.5) / 2, 3: 0.04, 4: 0.08 * (1 - 2**-0.5) / 2}  # (1 + cos(π (r−1)/4)) / 2
    expected = cosine if schedule == "cosine" else dict.fromkeys(cosine, 0.08)
    assert lrs(MessageType.TRAIN) == pytest.approx(expected)
    assert set(lrs(MessageType.EVALUATE).values()) == {0.08}  # fine-tuning before evaluation is not decayed


def test_an_unknown_local_lr_schedule_is_refused():
    cfg = configured("fedavg")
    cfg.strategy.local.lr_schedule = "linear"
    with pytest.raises(ValueError, match="strategy.local.lr_schedule='linear'"):
        cfg.strategy.local.validate()


@pytest.mark.parametrize("finetune_lr", [0.003, None])
def test_fedavg_ft_fine_tunes_at_its_own_rate_or_at_local_lr(loop_on, finetune_lr):
    cfg = configured("fedavg_ft", num_clients=2)
    cfg.strategy.finetune_steps, cfg.strategy.finetune_lr, cfg.strategy.local.lr = 4, finetune_lr, 0.07
    loop = loop_on(cfg)

    with mock.patch("clients.fedavg_ft.train_local", wraps=personal.train_local) as tuned:
        loop.evaluate(0, [0, 1], RoundMetrics())

    assert [(c.kwargs["steps"], c.args[4].lr) for c in tuned.call_args_list] == [(4, finetune_lr or 0.07)] * 2
