"""Failing clients: every kind of bad reply is left out, counted, and never touches Φ."""

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord

from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from strategies import pfedhn
from strategies.app import client_config
from strategies.directory import ClientDirectory


def drill(in_process_grid, kind: str, fraction: float, **sim):
    cfg = ExperimentConfig(strategy=pfedhn.PFedHNConfig())
    cfg.data.num_clients, cfg.data.subset = 4, 2000
    cfg.sim.clients_per_round, cfg.sim.num_rounds = 4, 1
    cfg.strategy.local.steps = 3
    cfg.faults.kind, cfg.faults.fraction = kind, fraction
    for k, v in sim.items():
        setattr(cfg.sim, k, v)
    grid = in_process_grid(4)
    directory = ClientDirectory()
    directory.discover(grid, client_config(cfg), expected=4, timeout=5)
    strategy = pfedhn.build(cfg, directory)
    config = ConfigRecord({**client_config(cfg), **protocol.encode(protocol.LOCAL_PREFIX, cfg.strategy.local)})
    replies = grid.send_and_receive(strategy.configure_train(1, ArrayRecord(), config, grid))
    return strategy, replies


@pytest.mark.parametrize(
    ("kind", "code"),
    [("raise", "error"), ("timeout", "timeout"), ("nan", "nonfinite"), ("shape", "shape"), ("huge", "huge")],
)
def test_each_fault_kind_is_rejected_with_its_reason(in_process_grid, kind, code, caplog):
    strategy, replies = drill(in_process_grid, kind, fraction=0.5)

    strategy.aggregate_train(1, replies)

    assert strategy.replies.rejected == {code: 2}
    assert strategy.round_metrics["train_clients"] == 2
    lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(lines) == 2 and all(f"({code})" in line for line in lines)


def test_a_round_below_min_replies_changes_nothing(in_process_grid):
    strategy, replies = drill(in_process_grid, "nan", fraction=0.75, min_replies=2)
    before = [p.detach().clone() for p in strategy.trainer.hnet.parameters()]

    arrays, metrics = strategy.aggregate_train(1, replies)

    assert arrays is None and metrics is None
    assert strategy.replies.rejected == {"nonfinite": 3}
    after = list(strategy.trainer.hnet.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_rejected_replies_never_reach_the_hypernetwork(in_process_grid):
    """A round with two NaN replies moves Φ exactly as the same round with only the two good ones."""
    strategy, replies = drill(in_process_grid, "nan", fraction=0.5)
    clean, clean_replies = drill(in_process_grid, "nan", fraction=0.5)
    good = [
        r
        for r in clean_replies
        if all(torch.isfinite(w).all() for w in protocol.record_to_weights(r.content[protocol.ARRAYS]).values())
    ]

    strategy.aggregate_train(1, replies)
    clean.aggregate_train(1, good)

    assert len(good) == 2 and clean.replies.rejected == {"timeout": 2}
    for a, b in zip(strategy.trainer.hnet.parameters(), clean.trainer.hnet.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_client_without_test_examples_is_left_out_of_the_mean_but_not_rejected(in_process_grid):
    from flwr.app import Message, MetricRecord, RecordDict

    strategy, _ = drill(in_process_grid, "raise", fraction=0.0)
    messages = list(strategy.configure_evaluate(1, ArrayRecord(), ConfigRecord(), None))
    replies = []
    for i, msg in enumerate(messages):
        cid = strategy.directory.client_of(msg.metadata.dst_node_id)
        n, acc = (0, 0.0) if i == 0 else (10, 0.5 + 0.1 * i)
        metrics = {"client-id": cid, "num-examples": n, "eval-loss": 1.0, "eval-accuracy": acc,
                   "num-val-examples": n // 2, "val-loss": 1.0, "val-accuracy": acc}  # fmt: skip
        replies.append(Message(RecordDict({protocol.METRICS: MetricRecord(metrics)}), reply_to=msg))

    result = strategy.aggregate_evaluate(1, replies)

    assert result["eval_clients"] == 3
    assert abs(result["accuracy"] - (0.6 + 0.7 + 0.8) / 3) < 1e-9
    assert strategy.replies.rejected == {}


def evaluation_replies(strategy, accuracies):
    from flwr.app import Message, MetricRecord, RecordDict

    replies = []
    for msg, acc in zip(strategy.configure_evaluate(1, ArrayRecord(), ConfigRecord(), None), accuracies, strict=True):
        cid = strategy.directory.client_of(msg.metadata.dst_node_id)
        metrics = {"client-id": cid, "num-examples": 10, "eval-loss": acc, "eval-accuracy": acc,
                   "num-val-examples": 5, "val-loss": acc, "val-accuracy": acc}  # fmt: skip
        replies.append(Message(RecordDict({protocol.METRICS: MetricRecord(metrics)}), reply_to=msg))
    return replies


def test_the_order_replies_arrive_in_changes_no_bit_of_the_result(in_process_grid):
    """Clients finish in any order; a resumed run must still sum their accuracies in the same order."""
    accuracies = [0.1, 0.2, 0.3, 0.6]
    assert sum(accuracies) != sum(reversed(accuracies))  # float sums depend on their order
    in_order, _ = drill(in_process_grid, "raise", fraction=0.0)
    reversed_, _ = drill(in_process_grid, "raise", fraction=0.0)

    a = in_order.aggregate_evaluate(1, evaluation_replies(in_order, accuracies))
    b = reversed_.aggregate_evaluate(1, list(reversed(evaluation_replies(reversed_, accuracies))))

    assert a["eval_clients"] == b["eval_clients"] == 4
    keys = ("accuracy", "eval_loss", "accuracy_pooled", "val_accuracy", "val_accuracy_pooled")
    assert [a[k] for k in keys] == [b[k] for k in keys]
