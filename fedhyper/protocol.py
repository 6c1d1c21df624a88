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
ALGORITHM = "algorithm"  # the client-side routine that trains and evaluates (one of CLIENT_ALGORITHMS)
DATA_PREFIX = "data"
MODEL_PREFIX = "model"
LOCAL_PREFIX = "local"

# Client-side routines: what a client does with what it receives. Whatever part of the model the
# server does not send, the client keeps to itself across rounds (FedPer's head, LG-FedAvg's body).
ALGO_PLAIN = "plain"  # train everything jointly, send back what was received (pFedHN, FedAvg, FedPer, ...)
ALGO_FEDAVG_FT = "fedavg_ft"  # plain training; fine-tune a copy before evaluating it
ALGO_FEDPROX = "fedprox"  # plain training with a proximal pull towards the received weights
ALGO_FEDREP = "fedrep"  # train the kept head first, then the received body
ALGO_DITTO = "ditto"  # train the received global model, and a kept personal model pulled towards it
ALGO_PERFEDAVG = "perfedavg"  # first-order MAML steps; one adaptation step before evaluating
ALGO_PFEDME = "pfedme"  # Moreau-envelope personal model per batch; the local model follows it
CLIENT_ALGORITHMS = (ALGO_PLAIN, ALGO_FEDAVG_FT, ALGO_FEDPROX, ALGO_FEDREP, ALGO_DITTO, ALGO_PERFEDAVG, ALGO_PFEDME)

# Settings of the client-side routines (server -> client, beside the local.* training config).
PROX_MU = "algo.mu"  # strength of a proximal pull: FedProx's mu, Ditto's and pFedMe's lambda
HEAD_STEPS = "algo.head-steps"  # FedRep: steps on the head (body frozen) before the body's steps
PERSONAL_STEPS = "algo.personal-steps"  # Ditto: steps on the personal model each round
ADAPT_STEPS = "algo.adapt-steps"  # steps of adaptation before evaluation (FedAvg-FT, Per-FedAvg)
INNER_LR = "algo.inner-lr"  # Per-FedAvg's alpha, pFedMe's personal learning rate
INNER_STEPS = "algo.inner-steps"  # pFedMe: steps solving for the personal model per batch

# Metric keys (client -> server).
CLIENT_ID = "client-id"  # the stable partition id, never the transport node id
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
EVAL_LOSS = "eval-loss"
EVAL_ACCURACY = "eval-accuracy"
NUM_TRAIN_EXAMPLES = "num-train-examples"
COMPUTE_SECONDS = "compute-s"  # time the client spent in its handler: round time minus this is overhead
KEPT_NORM = "kept-norm"  # L2 norm of all a client keeps to itself (0: nothing): shows its state persists
RECEIVED_NORM = "received-norm"  # L2 norm of the weights a client was sent: tells models apart in logs

# Node config keys (set per SuperNode, or per simulated node by the simulation engine).
NODE_PARTITION_ID = "partition-id"
NODE_DATA_DIR = "data-dir"  # a real node's own data (fedhyper.data.local) instead of a simulated partition

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
    return float(
        torch.sqrt(sum(((w.double() ** 2).sum() for w in weights.values()), torch.zeros((), dtype=torch.float64)))
    )


def metrics(**values: float | int) -> MetricRecord:
    return MetricRecord(dict(values))
