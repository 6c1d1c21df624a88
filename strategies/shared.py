"""Strategies around one shared model: the server holds the shared part, clients the rest.

FedAvg and its personalised descendants differ in two things only: which tensors the
server shares (all of them, the body, the head, or none) and what a client does with
them (its client routine, ``clients/<name>.py``). ``SharedModelStrategy`` holds the shared tensors, sends
the same copy to every client and replaces it by the example-weighted mean of the
clients' trained copies. What a client keeps stays on the client.

With ``privacy.*`` the mean becomes server-side fixed clipping and Gaussian noise
(``fedhyper.privacy.SharedClipping``): the mechanism of Flower's
``DifferentialPrivacyServerSideFixedClipping`` over a uniform FedAvg. Flower's wrapper itself
does not compose with these strategies: it wraps a ``flwr.serverapp.strategy.Strategy`` whose
``configure_train`` returns one message for all and whose ``aggregate_train`` takes Flower
messages, while a ``PersonalizedStrategy`` is driven by fedhyper's round loop with per-client
plans and checked replies; and its accounted mode accepts only no-amplification sampling with
``FedAvg.aggregate_train``, not the fixed-size sampling without replacement accounted here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from flwr.app import ArrayRecord

from fedhyper import privacy, protocol
from fedhyper.aggregate import select, weighted_mean
from fedhyper.config import ExperimentConfig
from fedhyper.data import dataset_info
from fedhyper.models import build_model, head_names, initial_weights
from fedhyper.search import LOCAL_LR_SPACE, EvalSpace, SearchSpace
from fedhyper.training import LocalTrainConfig
from strategies.base import PersonalizedStrategy, RoundPlan
from strategies.directory import ClientDirectory
from strategies.evaluation import train_summary
from strategies.exchange import Exchange
from strategies.replies import Reply

SHARES = ("all", "body", "head", "none")


@dataclass
class SharedModelConfig:
    """What every shared-model method configures: its name and the clients' local training.

    Every method here trains locally as pFedHN's clients do (``LocalTrainConfig``), so that
    a comparison varies the method and nothing else.
    """

    name: str = "fedavg"
    search_space: ClassVar[SearchSpace] = LOCAL_LR_SPACE  # the local learning rate; subclasses add their own keys
    eval_space: ClassVar[EvalSpace] = {}  # options acting only at evaluation (settle=true); none
    private_training: ClassVar[bool] = True  # privacy.*: updates clipped on the server, the sum noised
    local: LocalTrainConfig = field(default_factory=LocalTrainConfig)

    def validate(self) -> None:
        self.local.validate()


class SharedModelStrategy(PersonalizedStrategy):
    """One shared set of tensors, averaged over each round's trainers."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        directory: ClientDirectory,
        weights: dict[str, torch.Tensor],
        settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(cfg, directory)
        self.weights = dict(weights)  # the shared tensors, name -> tensor
        self.settings = dict(settings or {})  # the client routine's (clients/<name>.py)
        self._record: ArrayRecord | None = None  # the shared tensors as sent, built once per change
        mech = privacy.mechanism(cfg)
        self.privacy = None if mech is None else privacy.SharedClipping(mech)  # client-level DP of the mean

    def client_settings(self) -> dict[str, Any]:
        return dict(self.settings)

    def _payload(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        if self._record is None:
            self._record = protocol.weights_to_record(self.weights)
        return dict.fromkeys(client_ids, self._record)

    def configure_train(self, server_round: int, client_ids: list[int], calls: Exchange) -> RoundPlan:
        return RoundPlan(self._payload(client_ids))

    def configure_evaluate(self, server_round: int, client_ids: list[int], calls: Exchange) -> dict[int, ArrayRecord]:
        return self._payload(client_ids)

    def aggregate(self, replies: dict[int, Reply]) -> dict[str, torch.Tensor]:
        """The new shared tensors from a round's replies: their example-weighted mean (private: clipped, noised)."""
        ids = sorted(replies)
        if self.privacy is not None:  # uniform weights: a client's example count is its data
            return self.privacy.private_mean(self.weights, [replies[c].weights for c in ids])
        return weighted_mean([replies[c].weights for c in ids], [replies[c].num_examples for c in ids])

    def aggregate_train(
        self, server_round: int, plan: RoundPlan, replies: dict[int, Reply], calls: Exchange
    ) -> dict[str, float]:
        if self.weights:
            self.weights, self._record = self.aggregate(replies), None
        return train_summary(replies)

    def state_dict(self) -> dict[str, Any]:
        noise = {} if self.privacy is None else {"privacy": self.privacy.state_dict()}
        return {"weights": self.weights, **noise}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights, self._record = dict(state["weights"]), None
        if self.privacy is not None:
            self.privacy.load_state_dict(state["privacy"])


def shared_weights(cfg: ExperimentConfig, share: str) -> dict[str, torch.Tensor]:
    """The initial tensors the server shares: all, the body, the head (last linear layer) or none."""
    if share not in SHARES:
        raise ValueError(f"share={share!r} is unknown; choose one of {', '.join(SHARES)}")
    input_shape, n_classes = dataset_info(cfg.data.name)
    weights = initial_weights(cfg.model, input_shape, n_classes, cfg.seed)
    head = head_names(build_model(cfg.model, input_shape, n_classes))
    names: Collection[str] = {
        "all": weights,
        "body": [n for n in weights if n not in head],
        "head": head,
        "none": [],
    }[share]
    return select(weights, names)
