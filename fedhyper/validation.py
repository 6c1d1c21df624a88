"""Is a client's reply fit to touch the model? Pure checks, one reason per rejection.

Every reply passes here before any aggregate sees it. A rejected reply is left out of its
round with one logged line naming the client and the reason; reasons are counted for the
run's summary.
"""

from __future__ import annotations

import math

import torch
from flwr.app import RecordDict

from fedhyper import protocol

# Reason codes, as counted in summary.json's "rejected_replies".
ERROR = "error"  # the client raised; Flower returned an error reply
TIMEOUT = "timeout"  # no reply within the round's timeout
MISSING = "missing"  # a record, metric or tensor is absent
SHAPE = "shape"  # a tensor has the wrong shape or there are extra tensors
NONFINITE = "nonfinite"  # NaN or Inf in a tensor or metric
HUGE = "huge"  # the update's norm exceeds the configured bound
FOREIGN = "foreign"  # the reply names a client that was not asked, or came from another node


class Rejected(ValueError):
    """A reply that must not be used; ``code`` is one of the reason codes above."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def check_metrics(content: RecordDict, required: tuple[str, ...], min_examples: int = 1) -> dict[str, float]:
    """The reply's metrics: ``required`` keys present, values finite, at least ``min_examples``."""
    if protocol.METRICS not in content.metric_records:
        raise Rejected(MISSING, f"no {protocol.METRICS!r} record")
    metrics = content.metric_records[protocol.METRICS]
    absent = [k for k in required if k not in metrics]
    if absent:
        raise Rejected(MISSING, f"metrics lack {', '.join(absent)}")
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise Rejected(NONFINITE, f"metric {key} is {value}")
    if protocol.NUM_EXAMPLES in metrics and int(metrics[protocol.NUM_EXAMPLES]) < min_examples:
        raise Rejected(MISSING, f"{protocol.NUM_EXAMPLES} is {metrics[protocol.NUM_EXAMPLES]}")
    return dict(metrics)


def check_update(received: dict[str, torch.Tensor], sent: dict[str, torch.Tensor], max_update_norm: float) -> float:
    """Check trained weights against what the client was sent; return the update's L2 norm."""
    missing = [n for n in sent if n not in received]
    if missing:
        raise Rejected(MISSING, f"tensors {', '.join(missing)} are missing")
    extra = [n for n in received if n not in sent]
    if extra:
        raise Rejected(SHAPE, f"unexpected tensors {', '.join(extra)}")
    for name, w in received.items():
        if w.shape != sent[name].shape:
            raise Rejected(SHAPE, f"{name} has shape {tuple(w.shape)}, expected {tuple(sent[name].shape)}")
        if not torch.isfinite(w).all():
            raise Rejected(NONFINITE, f"{name} holds NaN or Inf")
    norm = math.sqrt(sum(float(((received[n] - sent[n]).double() ** 2).sum()) for n in sent))
    if max_update_norm > 0 and norm > max_update_norm:
        raise Rejected(HUGE, f"update norm {norm:.3g} exceeds sim.max_update_norm={max_update_norm:g}")
    return norm
