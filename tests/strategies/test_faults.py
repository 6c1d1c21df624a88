"""Failing clients: every kind of bad reply is left out, counted, and never touches Φ."""

import pytest
import torch
from flwr.app import Message, RecordDict

from fedhyper import protocol
from strategies.exchange import RoundMetrics
from strategies.loop import IdleRun
from strategies.replies import evaluation_check


@pytest.fixture
def drill_config(tiny_config):
    """``drill_config(kind, fraction, *sim)``: one round of four clients, ``fraction`` told to fail as ``kind``."""

    def build(kind: str, fraction: float, *sim: str):
        return tiny_config("pfedhn", "sim.clients_per_round=4", "sim.num_rounds=1", "strategy.local.steps=3",
                           f"faults.kind={kind}", f"faults.fraction={fraction}", *sim)  # fmt: skip

    return build


@pytest.fixture
def drill(loop_on, drill_config):
    """``drill(kind, fraction, *sim, on_reply=None)``: that round trained; the loop and its metrics."""

    def train(kind: str, fraction: float, *sim: str, on_reply=None):
        loop = loop_on(drill_config(kind, fraction, *sim), on_reply=on_reply)
        metrics = RoundMetrics()
        loop.train(1, metrics)
        return loop, metrics

    return train


@pytest.mark.parametrize(
    ("kind", "code"),
    [("raise", "error"), ("timeout", "timeout"), ("nan", "nonfinite"), ("shape", "shape"), ("huge", "huge")],
)
def test_each_fault_kind_is_rejected_with_its_reason(drill, kind, code, caplog):
    loop, metrics = drill(kind, 0.5)

    assert loop.replies.rejected == {code: 2}
    assert metrics.values["train_clients"] == 2 and metrics.values["train_rejected"] == 2
    lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(lines) == 2 and all(f"({code})" in line for line in lines)


def test_a_round_below_min_replies_changes_nothing(loop_on, drill, drill_config):
    loop, metrics = drill("nan", 0.75, "sim.min_replies=2")
    as_built = loop_on(drill_config("nan", 0.75, "sim.min_replies=2"))  # the same seeded hypernetwork

    assert loop.replies.rejected == {"nonfinite": 3}
    assert "train_clients" not in metrics.values
    after, before = loop.strategy.trainer.hnet.parameters(), as_built.strategy.trainer.hnet.parameters()
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def finite(reply) -> bool:
    weights = protocol.record_to_weights(reply.content[protocol.ARRAYS]) if protocol.ARRAYS in reply.content else {}
    return all(torch.isfinite(w).all() for w in weights.values())


def test_rejected_replies_never_reach_the_hypernetwork(drill):
    """A round with two NaN replies moves Φ exactly as the same round where those two never answered."""
    poisoned, _ = drill("nan", 0.5)
    silent, _ = drill("nan", 0.5, on_reply=lambda r: r if finite(r) else None)

    assert poisoned.replies.rejected == {"nonfinite": 2} and silent.replies.rejected == {"timeout": 2}
    both = zip(poisoned.strategy.trainer.hnet.parameters(), silent.strategy.trainer.hnet.parameters(), strict=True)
    for a, b in both:
        torch.testing.assert_close(a, b)


@pytest.fixture
def evaluation_replies(evaluation_metrics, fake_reply):
    """``evaluation_replies(loop, accuracies, examples)``: its clients' evaluation replies, in client-id order."""

    def build(loop, accuracies: list[float], examples: list[int]) -> list[Message]:
        replies = []
        for cid, acc, n in zip(loop.strategy.directory.client_ids, accuracies, examples, strict=True):
            asked = Message(RecordDict(), dst_node_id=loop.strategy.directory.node(cid), message_type="evaluate")
            replies.append(fake_reply(asked, evaluation_metrics(cid, n, acc, n // 2, acc)))
        return replies

    return build


def summed(loop, replies: list[Message]) -> dict[str, float]:
    ids = loop.strategy.directory.client_ids
    return loop.evaluations.summarise(loop.replies.sort(1, replies, ids, evaluation_check))


def test_a_client_without_test_examples_is_left_out_of_the_mean_but_not_rejected(drill, evaluation_replies):
    loop, _ = drill("raise", 0.0)

    result = summed(loop, evaluation_replies(loop, [0.0, 0.6, 0.7, 0.8], [0, 10, 10, 10]))

    assert result["eval_clients"] == 3
    assert abs(result["accuracy"] - (0.6 + 0.7 + 0.8) / 3) < 1e-9
    assert loop.replies.rejected == {}


def test_the_order_replies_arrive_in_changes_no_bit_of_the_result(drill, evaluation_replies):
    """Clients finish in any order; a resumed run must still sum their accuracies in the same order."""
    accuracies = [0.1, 0.2, 0.3, 0.6]
    assert sum(accuracies) != sum(reversed(accuracies))  # float sums depend on their order
    loop, _ = drill("raise", 0.0)

    a = summed(loop, evaluation_replies(loop, accuracies, [10] * 4))
    b = summed(loop, list(reversed(evaluation_replies(loop, accuracies, [10] * 4))))

    assert a["eval_clients"] == b["eval_clients"] == 4
    keys = ("accuracy", "eval_loss", "accuracy_pooled", "val_accuracy", "val_accuracy_pooled")
    assert [a[k] for k in keys] == [b[k] for k in keys]


def test_a_run_whose_rounds_all_change_nothing_stops_naming_the_clients_errors(loop_on, drill_config):
    loop = loop_on(drill_config("raise", 1.0, "sim.max_idle_rounds=2", "sim.num_rounds=3"))

    loop.train(1, RoundMetrics())  # one idle round: a warning
    assert loop.idle_rounds == 1
    with pytest.raises(IdleRun, match=r"round 2: 2 training rounds in a row .* error x8 \(latest: .*injected fault"):
        loop.train(2, RoundMetrics())


def test_a_stop_counts_as_diverged_only_when_its_idle_rounds_left_out_diverged_replies_alone(loop_on, drill_config):
    raised = loop_on(drill_config("raise", 1.0, "sim.max_idle_rounds=1"))
    with pytest.raises(IdleRun) as stop:
        raised.train(1, RoundMetrics())
    assert not stop.value.diverged  # clients that raised: the machine or the code may be at fault

    nan = loop_on(drill_config("nan", 1.0, "sim.max_idle_rounds=2", "sim.num_rounds=3"))
    nan.replies.reject(0, 2, "timeout", "no reply before the round's timeout")  # an earlier round lost a reply so
    nan.train(1, RoundMetrics())
    assert nan.state_dict() == {"idle_rounds": 1, "idle_rejected": {"nonfinite": 4}}
    with pytest.raises(IdleRun, match="timeout x1") as stop:  # the message counts the run's every rejection
        nan.train(2, RoundMetrics())
    assert stop.value.diverged


def test_a_round_that_changes_the_model_resets_the_idle_count(loop_on, drill_config):
    loop = loop_on(drill_config("raise", 0.0, "sim.max_idle_rounds=2"))
    loop.idle_rounds = 1

    loop.train(1, RoundMetrics())
    assert loop.idle_rounds == 0 and loop.replies.rejected == {}


def test_a_client_its_partition_left_without_training_examples_is_left_out_saying_so(loop_on, tiny_config, caplog):
    from fedhyper.data import load_federated

    cfg = tiny_config("fedavg", "data.num_clients=12", "sim.clients_per_round=12", "data.partition=dirichlet",
                      "data.alpha=0.01", "data.subset=600", "sim.num_rounds=1", "strategy.local.steps=2")  # fmt: skip
    dataset = load_federated(cfg.data, cfg.seed)
    empty = [c for c in range(len(dataset)) if len(dataset.split(c).train) == 0]
    loop, metrics = loop_on(cfg), RoundMetrics()

    loop.train(1, metrics)

    assert empty and loop.replies.rejected == {"error": len(empty)}
    assert metrics.values["train_clients"] == 12 - len(empty)
    lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(lines) == len(empty) and all("no training example to train on" in line for line in lines)
