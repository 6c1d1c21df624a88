"""What a round's replies add up to: the train loss, and test and validation accuracy over clients.

Every sum runs over replies in client-id order (``ReplySorter.sort`` returns them so), so a
resumed run reproduces an uninterrupted one to the last bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedhyper import protocol, record
from strategies.replies import Reply

TEST_SPLIT = (protocol.NUM_EXAMPLES, protocol.EVAL_LOSS, protocol.EVAL_ACCURACY)
VAL_SPLIT = (protocol.NUM_VAL_EXAMPLES, protocol.VAL_LOSS, protocol.VAL_ACCURACY)


def train_summary(replies: dict[int, Reply]) -> dict[str, float]:
    """The round's example-weighted train loss and how many clients trained."""
    counts = [r.num_examples for r in replies.values()]
    losses = [float(r.metrics[protocol.TRAIN_LOSS]) for r in replies.values()]
    return {
        record.TRAIN_LOSS: sum(loss * n for loss, n in zip(losses, counts, strict=True)) / sum(counts),
        record.TRAIN_CLIENTS: len(replies),
        record.TRAIN_GPU_CLIENTS: sum(int(r.metrics.get(protocol.ON_GPU, 0)) for r in replies.values()),
    }


def split_summary(replies: dict[int, Reply], keys: tuple[str, str, str], prefix: str) -> dict[str, float]:
    """One split's accuracy as the mean over clients and pooled over all their examples, and its loss.

    ``keys``: the replies' (examples, loss, accuracy) metric names; clients without an example of
    the split, or that did not evaluate it, are left out.
    """
    count, loss, accuracy = keys
    used = {cid: r.metrics for cid, r in replies.items() if int(r.metrics.get(count, 0)) > 0 and accuracy in r.metrics}
    if not used:
        return {}
    acc = {cid: float(m[accuracy]) for cid, m in used.items()}
    n = {cid: int(m[count]) for cid, m in used.items()}
    return {
        f"{prefix}{record.ACCURACY}": float(np.mean(list(acc.values()))),
        f"{prefix}{record.ACCURACY_POOLED}": sum(acc[c] * n[c] for c in acc) / sum(n.values()),  # all examples
        f"{prefix}loss": float(np.mean([m[loss] for m in used.values()])),
        f"{prefix}clients": len(acc),
    }


def evaluation_summary(replies: dict[int, Reply]) -> dict[str, float]:
    """Test and validation accuracy (mean over clients, and pooled), losses, and any uncertainty metrics."""
    test = split_summary(replies, TEST_SPLIT, "")
    result = {
        **(
            {
                record.ACCURACY: test[record.ACCURACY],
                record.ACCURACY_POOLED: test[record.ACCURACY_POOLED],
                record.EVAL_LOSS: test["loss"],
                record.EVAL_CLIENTS: test["clients"],
            }
            if test
            else {}
        ),  # fmt: skip
        **split_summary(replies, VAL_SPLIT, record.VAL),
    }
    for key in protocol.UNCERTAINTY_METRICS:  # noise-conditioned ensembles report these
        values = [float(r.metrics[key]) for r in replies.values() if key in r.metrics]
        if values:
            result[key.replace("-", "_")] = float(np.mean(values))
    return result


class Evaluations:
    """Sums evaluation replies, the trained and the novel clients apart; keeps each client's last accuracy."""

    def __init__(self, novel_ids: list[int]) -> None:
        self.novel = set(novel_ids)
        self.accuracy: dict[int, float] = {}  # each client's test accuracy at its last evaluation

    def summarise(self, valid: dict[int, Reply]) -> dict[str, float]:
        """The round's evaluation metrics; the held-out clients' under ``novel_`` and the gap between them."""
        if not valid:
            return {}
        self.accuracy.update(  # clients with test examples, when the test split was read
            {
                cid: float(r.metrics[protocol.EVAL_ACCURACY])
                for cid, r in valid.items()
                if protocol.EVAL_ACCURACY in r.metrics and r.num_examples > 0
            }  # fmt: skip
        )
        trained = {c: r for c, r in valid.items() if c not in self.novel}
        result = evaluation_summary(trained) if trained else {}
        if self.novel & set(valid):
            held_out = evaluation_summary({c: r for c, r in valid.items() if c in self.novel})
            result.update({f"{record.NOVEL}{k}": v for k, v in held_out.items()})
            if record.ACCURACY in result:
                result[record.GENERALIZATION_GAP] = result[record.ACCURACY] - result[record.NOVEL_ACCURACY]
        return result

    def state_dict(self) -> dict[str, Any]:
        return {"accuracy": dict(self.accuracy)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accuracy = {int(k): v for k, v in state["accuracy"].items()}
