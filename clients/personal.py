"""A client's round: what it was sent, what it keeps to itself, and the plain routine.

Whatever part of the target model the server does not send, the client keeps: it lives in
Flower's ``Context.state`` (per node, across rounds, in simulation and on a SuperNode
alike) and never enters a reply. It starts from the model's standard initialisation for
the run's seed, the same tensors the server's copy of the rest started from.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from flwr.app import ConfigRecord, RecordDict
from torch import nn

from clients.runtime import config_key
from fedhyper import protocol
from fedhyper.aggregate import select, without
from fedhyper.data import ClientData
from fedhyper.models import ModelConfig, client_width, initial_weights
from fedhyper.training import LocalTrainConfig, train_local

log = logging.getLogger("fedhyper")

PRIVATE = "private"  # Context.state key of the model part the server never sends


@dataclass
class Job:
    """One client's task in one round."""

    cid: int
    model: nn.Module
    data: ClientData
    config: ConfigRecord
    local: LocalTrainConfig
    received: dict[str, torch.Tensor]  # the part of the model the server sent
    state: RecordDict  # Flower's Context.state: survives across rounds on this node
    generator: torch.Generator
    device: torch.device
    input_shape: tuple[int, int, int]
    num_classes: int

    def setting(self, key: str) -> float:
        """A routine's setting from the message config, with a message naming it when absent."""
        if key not in self.config:
            raise ValueError(f"the server's config lacks {key!r}, which client algorithm {self.algorithm} needs")
        return float(self.config[key])

    @property
    def algorithm(self) -> str:
        return str(self.config.get(protocol.ALGORITHM, ""))

    def kept(self, key: str) -> dict[str, torch.Tensor] | None:
        """Tensors this client stored under ``key`` in an earlier round, or None."""
        if key not in self.state.array_records:
            return None
        return {n: w.to(self.device) for n, w in protocol.record_to_weights(self.state.array_records[key]).items()}

    def kept_norm(self) -> float:
        """L2 norm over everything this client keeps (its norm only ever leaves the node)."""
        kept = [protocol.record_to_weights(r) for r in self.state.array_records.values()]
        return protocol.l2_norm({f"{i}/{n}": w for i, k in enumerate(kept) for n, w in k.items()})

    def keep(self, key: str, weights: dict[str, torch.Tensor]) -> None:
        """Store ``weights`` under ``key`` for later rounds, unless a tensor holds NaN or Inf.

        A round whose training diverged leaves what this client kept before as it was: the server
        rejects the round's non-finite reply, and the client must not carry the broken part on.
        """
        broken = [n for n, w in weights.items() if not torch.isfinite(w).all()]
        if broken:
            log.warning("client %d: round's %s not kept, %s holds NaN or Inf", self.cid, key, broken[0])
            return
        self.state.array_records[key] = protocol.weights_to_record(weights)

    def full(self) -> dict[str, torch.Tensor]:
        """The whole model in its parameter order: the received part over the kept part, which
        is the initialisation until the client first keeps something."""
        return {**self.initial(), **(self.kept(PRIVATE) or {}), **self.received}

    def keep_private(self, weights: dict[str, torch.Tensor]) -> None:
        private = without(weights, self.received)
        if private:
            self.keep(PRIVATE, private)

    def shared(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The part of ``weights`` that goes back to the server: the names it sent."""
        return select(weights, self.received)

    def initial(self) -> dict[str, torch.Tensor]:
        """The model's standard initialisation for the run's seed, at this client's width."""
        model_cfg = protocol.decode(ModelConfig, protocol.MODEL_PREFIX, self.config)
        return _initial(
            config_key(model_cfg),
            self.input_shape,
            int(self.config[protocol.SEED]),
            self.num_classes,
            str(self.device),
            client_width(model_cfg, self.cid),
        )


@functools.lru_cache(maxsize=4)
def _initial(model_key: tuple, input_shape: tuple, seed: int, n_classes: int, device: str, width: float) -> dict:
    weights = initial_weights(ModelConfig(**dict(model_key)), input_shape, n_classes, seed, width)
    return {n: w.to(device) for n, w in weights.items()}


@dataclass(frozen=True)
class Routine:
    """A client algorithm: how it trains (returning what it sends back) and what it evaluates."""

    train: Callable[[Job], tuple[dict[str, torch.Tensor], float]]
    evaluation_weights: Callable[[Job], dict[str, torch.Tensor]]
    # What each of the packed members (protocol.pack_members) is evaluated as, for a routine whose members
    # differ; None: every member completed by evaluation_weights alike.
    members_weights: Callable[[Job, list[dict[str, torch.Tensor]]], list[dict[str, torch.Tensor]]] | None = None
    # Each member's weight in the ensemble's averaged prediction, for a routine that weighs them unequally;
    # None (or a None result): equal weights.
    mixture: Callable[[Job], list[float] | None] | None = None

    def member_mixture(self, job: Job) -> list[float] | None:
        """The members' weights in the averaged prediction, or None for equal ones."""
        return self.mixture(job) if self.mixture is not None else None

    def ensemble(self, job: Job, members: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """The weights each member of an ensemble is evaluated with."""
        if self.members_weights is not None:
            return self.members_weights(job, members)
        return [self.evaluation_weights(dataclasses.replace(job, received=m)) for m in members]


def plain_train(job: Job) -> tuple[dict[str, torch.Tensor], float]:
    """Train the whole model jointly; keep the private part, send back the received part."""
    trained, loss = train_local(job.model, job.full(), job.data.x_train, job.data.y_train, job.local, job.generator)
    job.keep_private(trained)
    return job.shared(trained), loss


def plain_evaluation_weights(job: Job) -> dict[str, torch.Tensor]:
    return job.full()


PLAIN = Routine(plain_train, plain_evaluation_weights)
