"""Everything that crosses the wire between a fedhyper server and its clients.

Record names, config keys and metric names are constants here; strategies and ClientApps
import them and share nothing else. Dataclass configs travel flattened under a prefix
(``local.lr``, ``data.num_clients``) and are rebuilt on the other side with their types.
"""

from __future__ import annotations

import dataclasses
import functools
import math
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
# Evaluate each client's test split as well as its validation split; a tuning trial sends False,
# so that no choice made while tuning ever reads a test example.
EVAL_TEST = "eval-test"
# The algorithm (``strategy=<name>``): its clients run the routine registered under that name in
# fedhyper.algorithms, or the plain one (train everything, send back what was received, keep the rest).
ALGORITHM = "algorithm"
DATA_PREFIX = "data"
MODEL_PREFIX = "model"
LOCAL_PREFIX = "local"
# The round's local learning rate (a training message's is local.lr on strategy.local.lr_schedule) and that schedule.
LOCAL_LR = f"{LOCAL_PREFIX}.lr"
LOCAL_LR_SCHEDULE = f"{LOCAL_PREFIX}.lr_schedule"

# Settings of the client-side routines (server -> client, beside the local.* training config).
PROX_MU = "algo.mu"  # strength of a proximal pull: FedProx's mu, Ditto's and pFedMe's lambda
HEAD_STEPS = "algo.head-steps"  # FedRep: steps on the head (body frozen) before the body's steps
PERSONAL_STEPS = "algo.personal-steps"  # Ditto: steps on the personal model each round
ADAPT_STEPS = "algo.adapt-steps"  # steps of adaptation before evaluation (FedAvg-FT, Per-FedAvg)
ADAPT_LR = "algo.adapt-lr"  # FedAvg-FT's fine-tuning rate; absent: local.lr
# FedHyper's shared model's fine-tuning before evaluation: its steps and learning rate
SHARED_ADAPT_STEPS = "algo.shared-adapt-steps"
SHARED_ADAPT_LR = "algo.shared-adapt-lr"
ENSEMBLE_WEIGHT = "algo.ensemble-weight"  # FedHyper: the generated model's weight in the averaged prediction
MUTUAL_WEIGHT = "algo.mutual-weight"  # FedHyper: the KL weight its two models distil from each other with; 0: none
INNER_LR = "algo.inner-lr"  # Per-FedAvg's alpha, pFedMe's personal learning rate
INNER_STEPS = "algo.inner-steps"  # pFedMe: steps solving for the personal model per batch
PERSONALIZE_AT_EVAL = "algo.personalize-at-eval"  # pFedMe: 1 to evaluate θ of a local round run at evaluation

# Metric keys (client -> server).
CLIENT_ID = "client-id"  # the stable partition id, never the transport node id
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
EVAL_LOSS = "eval-loss"
EVAL_ACCURACY = "eval-accuracy"
NUM_TRAIN_EXAMPLES = "num-train-examples"
# The validation split (data.val_fraction), evaluated beside the test split: tuning reads only these.
VAL_LOSS = "val-loss"
VAL_ACCURACY = "val-accuracy"
NUM_VAL_EXAMPLES = "num-val-examples"
COMPUTE_SECONDS = "compute-s"  # time the client spent in its handler: round time minus this is overhead
ON_GPU = "on-gpu"  # a training reply: 1 when the client trained on a CUDA device, 0 on the CPU
KEPT_NORM = "kept-norm"  # L2 norm of all a client keeps to itself (0: nothing): shows its state persists
RECEIVED_NORM = "received-norm"  # L2 norm of the weights a client was sent: tells models apart in logs
# An ensemble's evaluation (hnet.input=noise: several sampled models per client); EVAL_ACCURACY is the
# accuracy of the averaged prediction. Entropies in nats.
MEMBER_ACCURACY = "member-accuracy"  # mean accuracy of the single members
PREDICTIVE_ENTROPY = "predictive-entropy"  # entropy of the averaged prediction, mean over examples
MUTUAL_INFORMATION = "mutual-information"  # predictive entropy minus the members' mean entropy (disagreement)
ENTROPY_CORRECT = "entropy-correct"  # predictive entropy on the examples the ensemble got right
ENTROPY_WRONG = "entropy-wrong"  # ... and on those it got wrong: higher when uncertainty is informative
UNCERTAINTY_METRICS = (MEMBER_ACCURACY, PREDICTIVE_ENTROPY, MUTUAL_INFORMATION, ENTROPY_CORRECT, ENTROPY_WRONG)

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
    values = {}
    for name, is_float in _fields(cls):
        key = f"{prefix}.{name}"
        if key in record:
            value = record[key]
            values[name] = float(value) if is_float else value
    return cls(**values)


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """A dataclass's field names, each with whether it holds a float (a client decodes every message)."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name] in (float, float | None)) for f in dataclasses.fields(cls))


def weights_to_record(weights: dict[str, torch.Tensor]) -> ArrayRecord:
    """One client's weights (name -> tensor) as an ArrayRecord, in insertion order."""
    return ArrayRecord({name: w.detach().cpu().contiguous() for name, w in weights.items()})


def record_to_weights(record: ArrayRecord) -> dict[str, torch.Tensor]:
    return dict(record.to_torch_state_dict())


MEMBER_PREFIX = "member"  # an ensemble's weights travel in one record as "member<k>/<name>"


def pack_members(members: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Several models' weights as one name -> tensor dict, to send as one record."""
    return {f"{MEMBER_PREFIX}{k}/{name}": w for k, weights in enumerate(members) for name, w in weights.items()}


def unpack_members(weights: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]] | None:
    """The models ``pack_members`` packed, in order; None when ``weights`` is a single model."""
    if not weights or not next(iter(weights)).startswith(MEMBER_PREFIX):
        return None
    members: dict[int, dict[str, torch.Tensor]] = {}
    for key, w in weights.items():
        index, name = key.removeprefix(MEMBER_PREFIX).split("/", 1)
        members.setdefault(int(index), {})[name] = w
    return [members[k] for k in sorted(members)]


def l2_norm(weights: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float((w.double() ** 2).sum()) for w in weights.values()))


def metrics(**values: float | int) -> MetricRecord:
    return MetricRecord(dict(values))


# PeFLL (hnet.input=data, ``fedhyper.descriptor``): two query actions beside a round's train message.
# query.descriptor: ARRAYS = ψ's weights, CONFIG; the reply holds DESCRIPTOR (v_i, one tensor of that
# name) and METRICS (CLIENT_ID, NUM_EXAMPLES). query.descriptor_grad: ARRAYS = the same ψ,
# DESCRIPTOR_GRAD (dL/dv_i, one tensor of that name), CONFIG; the reply's ARRAYS hold ψ's gradient,
# name by name, with METRICS as above.
DESCRIPTOR_ACTION = "descriptor"
DESCRIPTOR_GRAD_ACTION = "descriptor_grad"
DESCRIPTOR_QUERY = f"query.{DESCRIPTOR_ACTION}"  # the message types a server sends
DESCRIPTOR_GRAD_QUERY = f"query.{DESCRIPTOR_GRAD_ACTION}"
DESCRIPTOR = "descriptor"  # record and tensor name: a client's descriptor v_i [d]
DESCRIPTOR_GRAD = "descriptor-grad"  # record and tensor name: dL/dv_i [d]
