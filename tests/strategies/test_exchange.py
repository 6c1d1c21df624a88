"""The Exchange: one message per client out, checked replies back in client-id order, traffic counted."""

import time

import torch
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedhyper import protocol
from strategies import transport
from strategies.directory import ClientDirectory
from strategies.exchange import Exchange, RoundMetrics
from strategies.replies import ReplySorter, arrays_check


class EchoGrid:
    """Clients that answer a query with a descriptor of their id (all but ``silent``), last client first."""

    def __init__(self, silent: set[int]) -> None:
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1  # messages are stamped with it
        self.silent, self.sent = silent, []

    def send_and_receive(self, messages, *, timeout=None):
        self.sent += messages
        replies = []
        for msg in reversed(list(messages)):
            cid = msg.metadata.dst_node_id - 100
            if cid in self.silent:
                continue
            vector = {protocol.DESCRIPTOR: torch.full((3,), float(cid))}
            metrics = protocol.metrics(
                **{protocol.CLIENT_ID: cid, protocol.NUM_EXAMPLES: 5, protocol.COMPUTE_SECONDS: 0.5}
            )
            content = RecordDict({protocol.DESCRIPTOR: protocol.weights_to_record(vector), protocol.METRICS: metrics})
            replies.append(Message(content, reply_to=msg))
        return replies


def exchange(grid, phase: str, metrics: RoundMetrics, orders=None) -> Exchange:
    directory = ClientDirectory()
    for cid in range(4):
        directory.register(cid, 100 + cid, 10)
    config = ConfigRecord({protocol.SERVER_ROUND: 7})
    return Exchange(grid, directory, ReplySorter(directory), 5.0, 7, phase, config, metrics, orders)


def test_ask_returns_checked_replies_in_client_id_order_and_counts_traffic_and_rejections():
    grid, metrics = EchoGrid(silent={2}), RoundMetrics()
    calls = exchange(grid, MessageType.TRAIN, metrics)
    psi = protocol.weights_to_record({"w": torch.zeros(10)})
    check = arrays_check(protocol.DESCRIPTOR, {protocol.DESCRIPTOR: torch.zeros(3)}, "descriptor")

    valid = calls.ask(protocol.DESCRIPTOR_QUERY, {c: {protocol.ARRAYS: psi} for c in (3, 0, 2, 1)}, check)

    assert list(valid) == [0, 1, 3]  # replies came last client first; client 2 never answered
    assert [float(valid[c].weights[protocol.DESCRIPTOR][0]) for c in valid] == [0.0, 1.0, 3.0]
    assert metrics.values["train_descriptor_bytes_sent"] == 4 * psi.count_bytes()
    one_reply = protocol.weights_to_record({protocol.DESCRIPTOR: torch.zeros(3)}).count_bytes()
    assert metrics.values["train_descriptor_bytes_received"] == 3 * one_reply
    assert metrics.values["train_descriptor_rejected"] == 1
    assert metrics.values["train_descriptor_client_compute_s"] == 1.5
    assert calls.replies.rejected == {"timeout": 1}
    assert [row["kind"] for row in metrics.clients] == [protocol.DESCRIPTOR_QUERY] * 3
    assert {m.content[protocol.CONFIG][protocol.SERVER_ROUND] for m in grid.sent} == {7}


def test_fault_orders_reach_only_the_train_messages_of_the_ordered_clients():
    grid = EchoGrid(silent=set())
    orders = {1: {protocol.FAULT: "nan"}}
    calls = exchange(grid, MessageType.TRAIN, RoundMetrics(), orders)
    check = arrays_check(protocol.DESCRIPTOR, {protocol.DESCRIPTOR: torch.zeros(3)}, "descriptor")

    calls.ask(protocol.DESCRIPTOR_QUERY, {0: {}, 1: {}}, check)
    calls.ask(MessageType.TRAIN, {0: {}, 1: {}}, check)

    faulty = [(m.metadata.message_type, m.metadata.dst_node_id - 100) for m in grid.sent
              if protocol.FAULT in m.content[protocol.CONFIG]]  # fmt: skip
    assert faulty == [(MessageType.TRAIN, 1)]


class SuperLinkGrid:
    """A deployment's grid: replies are pulled; client ``c`` answers at the ``c``-th pull, ``silent`` never."""

    def __init__(self, silent: set[int]) -> None:
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self.silent, self.pulls, self.pushed = silent, 0, {}

    def push_messages(self, messages):
        self.pushed = {str(i): msg for i, msg in enumerate(messages)}
        for i, msg in self.pushed.items():
            msg.metadata.__dict__["_message_id"] = i  # ids as a SuperLink gives them
        return list(self.pushed)

    def pull_messages(self, ids):
        self.pulls += 1
        ready = [i for i in ids if int(i) + 1 == self.pulls and int(i) not in self.silent]
        return [Message(RecordDict(), reply_to=self.pushed[i]) for i in ready]

    def send_and_receive(self, messages, *, timeout=None):
        raise AssertionError("Flower's own loop sleeps 3 s between pulls")


def test_replies_from_a_superlink_are_pulled_at_fedhypers_interval_until_all_came_or_the_time_is_up(monkeypatch):
    monkeypatch.setattr(transport, "SUPERLINK_POLL_S", 0.01)
    messages = lambda: [Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY) for n in range(3)]  # noqa: E731

    grid = SuperLinkGrid(silent=set())
    replies = transport.send_and_receive(grid, messages(), timeout=5.0)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["0", "1", "2"] and grid.pulls == 3

    grid = SuperLinkGrid(silent={1})
    start = time.monotonic()
    replies = transport.send_and_receive(grid, messages(), timeout=0.3)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["0", "2"]
    assert 0.3 <= time.monotonic() - start < 2.0 and grid.pulls > 3  # it kept asking until the timeout
