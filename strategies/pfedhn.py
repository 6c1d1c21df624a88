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
from typing import Any, ClassVar

import torch
from flwr.app import ArrayRecord

from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from fedhyper.data import dataset_info
from fedhyper.device import select_device
from fedhyper.hypernet import HyperNetwork
from fedhyper.models import build_model, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig
from fedhyper.training import LocalTrainConfig
from fedhyper.widths import ClientWidths
from strategies.base import PersonalizedStrategy, stacked_replies, train_summary
from strategies.directory import ClientDirectory
from strategies.replies import Reply


@dataclass
class PFedHNConfig:
    """pFedHN's defaults: 3 hidden layers of 100, outer SGD 1e-2, 50 inner steps of SGD 5e-3."""

    name: str = "pfedhn"
    varied_widths: ClassVar[bool] = True  # model.width_multipliers: each client gets its width's slice
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
        self.widths = ClientWidths(cfg.model, *dataset_info(cfg.data.name), trainer.hnet.target_shapes)

    def _generate(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        """Each client's generated weights, cut to its width (``fedhyper.widths``)."""
        weights = self.widths.split(client_ids, self.trainer.generate(client_ids))
        return {cid: protocol.weights_to_record(w) for cid, w in weights.items()}

    train_payloads = _generate
    eval_payloads = _generate

    def apply_train(self, server_round: int, replies: dict[int, Reply]) -> dict[str, float]:
        """One outer step of Φ and the embeddings from the round's trained weights."""
        ids = sorted(replies)
        if self.widths.varied:  # narrow replies inside what the step generates again: Δ_i = 0 outside a slice
            trained = self.widths.join(ids, {c: replies[c].weights for c in ids}, self.trainer.generate(ids))
        else:
            trained = stacked_replies(replies, ids)
        grad_norm = self.trainer.step(ids, trained, [replies[c].num_examples for c in ids])
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
    hnet = HyperNetwork(shapes, cfg.data.num_clients, cfg.hnet)
    return HyperNetTrainer(hnet.to(select_device(cfg.device)), cfg.strategy.outer, seed=cfg.seed)


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> PFedHN:
    """A pFedHN strategy for ``cfg``, its hypernetwork on the configured device."""
    return PFedHN(cfg, directory, build_trainer(cfg))
