"""What an algorithm supplies to the round loop (``strategies.loop``): what each client is sent, and
what the server does with the replies.

Flower's FedAvg sends one RecordDict to every sampled node; a personalised strategy sends each
client its own weights. A strategy here decides, for the clients the loop sampled, what each is
sent to train from (``configure_train``, returning a ``RoundPlan``), folds the valid replies into
its state (``aggregate_train``, given that same plan back) and says what each evaluated client is
sent (``configure_evaluate``). Messaging, reply checks, sampling, faults, traffic counts,
checkpoints and the record are the loop's pieces, not the strategy's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ArrayRecord

from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from strategies.directory import ClientDirectory
from strategies.exchange import Exchange
from strategies.replies import Reply


def per_client_records(client_ids: list[int], weights: dict[str, torch.Tensor]) -> dict[int, ArrayRecord]:
    """Each client's slice of batched weights (name -> [B, *shape], rows in ``client_ids`` order)."""
    return {cid: protocol.weights_to_record({n: w[b] for n, w in weights.items()}) for b, cid in enumerate(client_ids)}


def stacked_replies(replies: dict[int, Reply], client_ids: list[int]) -> dict[str, torch.Tensor]:
    """The replies' trained weights batched in ``client_ids`` order: name -> [B, *shape]."""
    names = replies[client_ids[0]].weights
    return {n: torch.stack([replies[c].weights[n] for c in client_ids]) for n in names}


@dataclass
class RoundPlan:
    """What a round's trainers were sent; a strategy whose step needs more from that moment extends it."""

    sent: dict[int, ArrayRecord]  # client id -> the weights it trains from


class PersonalizedStrategy(ABC):
    """An algorithm's server side: per-client payloads out, its own state updated from the replies."""

    # Whether held-out (novel) clients get rounds of their own after training (pFedHN fits their
    # embeddings); if not, they are only evaluated at the end, on what training left.
    adapts_novel_clients = False

    def __init__(self, cfg: ExperimentConfig, directory: ClientDirectory) -> None:
        self.name = cfg.strategy.name  # the registered algorithm: what its clients are told to run
        self.directory = directory
        self.num_rounds = cfg.sim.num_rounds  # later rounds are the novel clients' own

    @abstractmethod
    def configure_train(self, server_round: int, client_ids: list[int], calls: Exchange) -> RoundPlan:
        """The weights each sampled client trains from; a client left out of ``sent`` sits the round out."""

    @abstractmethod
    def aggregate_train(
        self, server_round: int, plan: RoundPlan, replies: dict[int, Reply], calls: Exchange
    ) -> dict[str, float]:
        """Fold a round's valid train replies (client-id order) into the server state; return round metrics."""

    @abstractmethod
    def configure_evaluate(self, server_round: int, client_ids: list[int], calls: Exchange) -> dict[int, ArrayRecord]:
        """The weights each client is evaluated with (its personalised model)."""

    def client_settings(self) -> dict[str, Any]:
        """Settings of the algorithm's client routine that travel in every message's config."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The algorithm's state a checkpoint keeps: extend in subclasses."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (a strategy without state keeps none)
        """Restore what ``state_dict`` returned."""

    def summary_extras(self) -> dict[str, Any]:
        """Fields of ``fedhyper.record.Summary`` the strategy fills (pFedHN: its parameter counts)."""
        return {}

    def client_vectors(self) -> dict[int, torch.Tensor] | None:
        """What the server knows each client by, client id -> [d] (pFedHN: its embedding), or None."""
        return None
