"""Sorting a round's replies into usable ones and rejections, one logged line per rejection."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable
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


@dataclass
class Reply:
    """A reply that passed every check."""

    content: RecordDict
    metrics: dict[str, float]
    weights: dict[str, torch.Tensor] | None = None  # trained weights (train replies)
    update_norm: float | None = None

    @property
    def num_examples(self) -> int:
        return int(self.metrics.get(protocol.NUM_EXAMPLES, 0))  # 0: the test split was not read


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


class ReplySorter:
    """Checks replies against what each client was sent; counts rejections by reason."""

    def __init__(self, directory: ClientDirectory, max_update_norm: float) -> None:
        self.directory = directory
        self.max_update_norm = max_update_norm
        self.rejected: Counter[str] = Counter()

    def reject(self, server_round: int, cid: int | str, code: str, detail: str) -> None:
        self.rejected[code] += 1
        log.warning("round %d: client %s left out (%s): %s", server_round, cid, code, detail)

    def sort(
        self,
        server_round: int,
        replies: Iterable[Message],
        asked: Collection[int],
        sent: dict[int, ArrayRecord] | None = None,
    ) -> dict[int, Reply]:
        """The valid replies by client id, in client-id order; every client ``asked`` without one is rejected.

        Replies arrive in whatever order clients finish; every sum over them runs in client-id order,
        so a resumed run reproduces an uninterrupted one to the last bit.

        ``sent`` holds what each client was sent to train from; without it the replies are
        evaluation replies and carry no weights.
        """
        valid: dict[int, Reply] = {}
        answered: set[int] = set()
        for msg in replies:
            node_cid = self.directory.client_of(msg.metadata.src_node_id)
            try:
                cid, reply = self._check(msg, node_cid, asked, sent)
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

    def _check(
        self, msg: Message, node_cid: int | None, asked: Collection[int], sent: dict[int, ArrayRecord] | None
    ) -> tuple[int, Reply]:
        # A client may hold no test examples (a small Dirichlet share); it cannot train on none.
        required, least = (EVAL_METRICS, 0) if sent is None else (TRAIN_METRICS, 1)
        cid, metrics = identify(msg, node_cid, asked, required, least)
        if sent is None:
            return cid, Reply(msg.content, metrics)
        weights = read_arrays(msg, protocol.ARRAYS)
        norm = validation.check_update(weights, protocol.record_to_weights(sent[cid]), self.max_update_norm)
        return cid, Reply(msg.content, metrics, weights, norm)
