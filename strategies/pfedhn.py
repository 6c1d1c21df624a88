"""pFedHN: a server-side hypernetwork generates every client's personalised model.

Shamsian, Navon, Fetaya, Chechik. "Personalized Federated Learning using Hypernetworks".
ICML 2021. https://arxiv.org/abs/2103.04628

Each round the hypernetwork h(·; Φ) turns the sampled clients' embeddings v_i into their
weights θ̃_i in one batched forward; each client trains θ̃_i locally and returns θ_i; the
server steps Φ and v_i along the vector-Jacobian product of Δ_i = θ_i − θ̃_i, for all the
round's clients in one backward pass (``fedhyper.hypergrad``). The reference code updates
after every single client; ``clients_per_round=1`` reproduces that exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from flwr.app import ArrayRecord

from fedhyper.config import ExperimentConfig
from fedhyper.data import dataset_info
from fedhyper.device import select_device
from fedhyper.hypernet import HyperNetConfig, PerTensorHyperNet
from fedhyper.models import build_model, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig
from fedhyper.training import LocalTrainConfig
from strategies.base import PersonalizedStrategy, per_client_records, stacked_replies, train_summary
from strategies.directory import ClientDirectory
from strategies.replies import Reply


@dataclass
class PFedHNConfig:
    """pFedHN's defaults: 3 hidden layers of 100, outer SGD 1e-2, 50 inner steps of SGD 5e-3."""

    name: str = "pfedhn"
    hnet: HyperNetConfig = field(default_factory=HyperNetConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    local: LocalTrainConfig = field(default_factory=LocalTrainConfig)

    def validate(self) -> None:
        self.outer.validate()
        self.local.validate()


class PFedHN(PersonalizedStrategy):
    """The hypernetwork lives here; clients only ever see their own generated weights."""

    def __init__(self, cfg: ExperimentConfig, directory: ClientDirectory, trainer: HyperNetTrainer) -> None:
        super().__init__(cfg, directory)
        self.trainer = trainer

    def _generate(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        return per_client_records(client_ids, self.trainer.generate(client_ids))

    train_payloads = _generate
    eval_payloads = _generate

    def apply_train(self, server_round: int, replies: dict[int, Reply]) -> dict[str, float]:
        """One outer step of Φ and the embeddings from the round's trained weights."""
        ids = sorted(replies)
        grad_norm = self.trainer.step(ids, stacked_replies(replies, ids), [replies[c].num_examples for c in ids])
        return {**train_summary(replies), "grad_norm": grad_norm}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "hnet": self.trainer.hnet.state_dict(),
            "optimizer": self.trainer.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.trainer.hnet.load_state_dict(state["hnet"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])


def build_trainer(cfg: ExperimentConfig, exclude: tuple[str, ...] = ()) -> HyperNetTrainer:
    """The hypernetwork for the target's tensors except ``exclude``, with its optimiser, on its device."""
    input_shape, n_classes = dataset_info(cfg.data.name)
    target = build_model(cfg.model, input_shape, n_classes)
    shapes = {n: s for n, s in target_shapes(target).items() if n not in exclude}
    torch.manual_seed(cfg.seed)
    hnet = PerTensorHyperNet(shapes, cfg.data.num_clients, cfg.strategy.hnet)
    return HyperNetTrainer(hnet.to(select_device(cfg.device)), cfg.strategy.outer)


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> PFedHN:
    """A pFedHN strategy for ``cfg``, its hypernetwork on the configured device."""
    return PFedHN(cfg, directory, build_trainer(cfg))
