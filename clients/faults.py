"""Fault injection: a client told to fail (``faults.kind``) fails in that way.

Only the server's order in the message config triggers a fault, so the same ClientApp
serves normal runs and fault drills; what the server then does is the subject of the drill.
"""

from __future__ import annotations

import time

import torch
from flwr.app import ConfigRecord

from fedhyper import protocol


class InjectedFault(RuntimeError):
    """Raised by a client ordered to fail with ``faults.kind=raise``."""


def before_training(config: ConfigRecord) -> None:
    """Fail before any work: raise, or sleep past the round's timeout."""
    kind = config.get(protocol.FAULT)
    if kind == "raise":
        raise InjectedFault("injected fault: this client was told to raise")
    if kind == "timeout":
        time.sleep(float(config[protocol.FAULT_SLEEP]))


def corrupt(config: ConfigRecord, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Spoil the trained weights as ordered: NaN, a wrong shape, or an absurdly large update."""
    kind = config.get(protocol.FAULT)
    if kind not in ("nan", "shape", "huge") or not weights:  # a client that shares nothing has nothing to spoil
        return weights
    out = dict(weights)
    name = next(iter(out))
    if kind == "nan":
        out[name] = torch.full_like(out[name], float("nan"))
    elif kind == "shape":
        out[name] = out[name][..., :-1].contiguous() if out[name].dim() > 1 else out[name][:-1].contiguous()
    else:
        out[name] = out[name] * 1e6 + 1e6
    return out
