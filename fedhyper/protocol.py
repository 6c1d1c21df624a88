"""Everything that crosses the wire between a fedhyper server and its clients.

Record names, config keys and metric names are constants here; strategies and ClientApps
import them and share nothing else. Dataclass configs travel flattened under a prefix
(``local.lr``, ``data.num_clients``) and are rebuilt on the other side with their types.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

# Record names inside a message's RecordDict.
ARRAYS = "arrays"  # model weights: generated (server -> client) or trained (client -> server)
CONFIG = "config"
METRICS = "metrics"

# Config keys (server -> client).
SERVER_ROUND = "server-round"
SEED = "seed"
FAULT = "fault"  # fault injection: the client must fail this way (see fedhyper.config.FaultConfig)
FAULT_SLEEP = "fault-sleep"  # seconds a "timeout" fault sleeps
DATA_PREFIX = "data"
MODEL_PREFIX = "model"
LOCAL_PREFIX = "local"

# Metric keys (client -> server).
CLIENT_ID = "client-id"  # the stable partition id, never the transport node id
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
EVAL_LOSS = "eval-loss"
EVAL_ACCURACY = "eval-accuracy"
NUM_TRAIN_EXAMPLES = "num-train-examples"
COMPUTE_SECONDS = "compute-s"  # time the client spent in its handler: round time minus this is overhead
RECEIVED_NORM = "received-norm"  # L2 norm of the weights a client was sent: tells models apart in logs

# Node config keys (set per SuperNode, or per simulated node by the simulation engine).
NODE_PARTITION_ID = "partition-id"

T = TypeVar("T")


def encode(prefix: str, cfg: Any) -> dict[str, Any]:
    """Flatten a dataclass into ``prefix.field`` entries, leaving out fields that are None."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if value is not None:
            out[f"{prefix}.{field.name}"] = list(value) if isinstance(value, tuple) else value
    return out


def decode(cls: type[T], prefix: str, record: ConfigRecord | dict[str, Any]) -> T:
    """Rebuild a ``cls`` instance from the ``prefix.field`` entries ``encode`` wrote."""
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f"{prefix}.{field.name}"
        if key in record:
            value = record[key]
            values[field.name] = float(value) if hints[field.name] in (float, float | None) else value
    return cls(**values)


def weights_to_record(weights: dict[str, torch.Tensor]) -> ArrayRecord:
    """One client's weights (name -> tensor) as an ArrayRecord, in insertion order."""
    return ArrayRecord({name: w.detach().cpu().contiguous() for name, w in weights.items()})


def record_to_weights(record: ArrayRecord) -> dict[str, torch.Tensor]:
    return dict(record.to_torch_state_dict())


def l2_norm(weights: dict[str, torch.Tensor]) -> float:
    return float(torch.sqrt(sum((w.double() ** 2).sum() for w in weights.values())))


def metrics(**values: float | int) -> MetricRecord:
    return MetricRecord(dict(values))
