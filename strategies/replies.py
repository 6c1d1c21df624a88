"""Sorting replies into usable ones and rejections, one logged line per rejection.

What makes a reply usable depends on what was asked: a train reply carries weights shaped like
those it was sent, an evaluation reply carries metrics only, a query reply (PeFLL's) carries one
array record of known tensors. Each is a ``Check``; ``ReplySorter.sort`` applies one to every
reply of an exchange and counts the rejections by reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

import torch
from flwr.app import ArrayRecord, Message, RecordDict

from fedhyper import protocol, validation
from strategies.directory import ClientDirectory

log = logging.getLogger("fedhyper")

TRAIN_METRICS = (protocol.CLIENT_ID, protocol.NUM_EXAMPLES, protocol.TRAIN_LOSS)
# Every evaluation reports the validation split; the test split's metrics come unless the server asked
# not to read it (tuning), and are checked where they are summed.
EVAL_METRICS = (protocol.CLIENT_ID, protocol.NUM_VAL_EXAMPLES, protocol.VAL_LOSS, protocol.VAL_ACCURACY)
QUERY_METRICS = (protocol.CLIENT_ID, protocol.NUM_EXAMPLES)


@dataclass
class Reply:
    """A reply that passed every check."""

    content: RecordDict
    metrics: dict[str, float]
    weights: dict[str, torch.Tensor] | None = None  # the arrays it carried (train and query replies)
    update_norm: float | None = None

    @property
    def num_examples(self) -> int:
        return int(self.metrics.get(protocol.NUM_EXAMPLES, 0))  # 0: the test split was not read


# (reply, the client its node is, the clients asked) -> (client id, the usable reply), or Rejected
Check = Callable[[Message, int | None, Collection[int]], tuple[int, Reply]]


def identify(
    msg: Message, node_cid: int | None, asked: Collection[int], required: tuple[str, ...], least: int = 1
) -> tuple[int, dict[str, float]]:
    """The replying client's id and metrics, or Rejected: an error reply, bad metrics, a foreign client."""
    if msg.has_error():
        raise validation.Rejected(validation.ERROR, msg.error.reason.strip().splitlines()[-1][:300])
    metrics = validation.check_metrics(msg.content, required, least)
    cid = int(metrics[protocol.CLIENT_ID])
    if cid != node_cid or cid not in asked:
        raise validation.Rejected(validation.FOREIGN, f"node {msg.metadata.src_node_id} answered as client {cid}")
    return cid, metrics


def read_arrays(msg: Message, record: str) -> dict[str, torch.Tensor]:
    """The tensors of the reply's ``record``, or Rejected when it is missing or undecodable."""
    if record not in msg.content.array_records:
        raise validation.Rejected(validation.MISSING, f"no {record!r} record")
    try:
        return protocol.record_to_weights(msg.content.array_records[record])
    except Exception as err:  # undecodable arrays are as bad as missing ones
        raise validation.Rejected(validation.MISSING, f"arrays cannot be read: {err}") from err


def evaluation_check(msg: Message, node_cid: int | None, asked: Collection[int]) -> tuple[int, Reply]:
    """Metrics only; a client may hold no test examples (a small Dirichlet share)."""
    cid, metrics = identify(msg, node_cid, asked, EVAL_METRICS, least=0)
    return cid, Reply(msg.content, metrics)


def train_check(sent: dict[int, ArrayRecord], max_update_norm: float) -> Check:
    """Trained weights named and shaped as those sent, finite, within ``max_update_norm`` of them."""

    def check(msg: Message, node_cid: int | None, asked: Collection[int]) -> tuple[int, Reply]:
        cid, metrics = identify(msg, node_cid, asked, TRAIN_METRICS)  # a client cannot train on no examples
        weights = read_arrays(msg, protocol.ARRAYS)
        norm = validation.check_update(weights, protocol.record_to_weights(sent[cid]), max_update_norm)
        return cid, Reply(msg.content, metrics, weights, norm)

    return check


def arrays_check(record: str, expected: dict[str, torch.Tensor], what: str) -> Check:
    """One array record holding the tensors of ``expected`` (names and shapes), finite."""
    zeros = {n: torch.zeros(t.shape) for n, t in expected.items()}  # replies arrive on the CPU

    def check(msg: Message, node_cid: int | None, asked: Collection[int]) -> tuple[int, Reply]:
        try:
            cid, metrics = identify(msg, node_cid, asked, QUERY_METRICS)
            arrays = read_arrays(msg, record)
            # Names, shapes and finiteness against zeros: the "update norm" is then the arrays' own norm.
            norm = validation.check_update(arrays, zeros, max_update_norm=0.0)
        except validation.Rejected as err:
            raise validation.Rejected(err.code, f"{what}: {err}") from err
        return cid, Reply(msg.content, metrics, arrays, norm)

    return check


class ReplySorter:
    """Applies a check to every reply of an exchange; counts rejections by reason over the run."""

    def __init__(self, directory: ClientDirectory) -> None:
        self.directory = directory
        self.rejected: Counter[str] = Counter()
        self.last_detail: dict[str, str] = {}  # by reason: the latest rejection's detail

    def reject(self, server_round: int, cid: int | str, code: str, detail: str) -> None:
        self.rejected[code] += 1
        self.last_detail[code] = detail
        log.warning("round %d: client %s left out (%s): %s", server_round, cid, code, detail)

    def sort(
        self, server_round: int, replies: Iterable[Message], asked: Collection[int], check: Check
    ) -> dict[int, Reply]:
        """The valid replies by client id, in client-id order; every client ``asked`` without one is rejected.

        Replies arrive in whatever order clients finish; every sum over them runs in client-id order,
        so a resumed run reproduces an uninterrupted one to the last bit.
        """
        valid: dict[int, Reply] = {}
        answered: set[int] = set()
        for msg in replies:
            node_cid = self.directory.client_of(msg.metadata.src_node_id)
            try:
                cid, reply = check(msg, node_cid, asked)
            except validation.Rejected as err:
                if node_cid is not None:
                    answered.add(node_cid)  # it did answer, badly: not a timeout as well
                self.reject(server_round, "?" if node_cid is None else node_cid, err.code, str(err))
                continue
            answered.add(cid)
            valid[cid] = reply
        for cid in sorted(set(asked) - answered):
            self.reject(server_round, cid, validation.TIMEOUT, "no reply before the round's timeout")
        return dict(sorted(valid.items()))

    def state_dict(self) -> dict[str, int]:
        return dict(self.rejected)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.rejected.update(state)
