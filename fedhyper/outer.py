"""The server side of pFedHN: the hypernetwork, its outer optimiser and one update step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedhyper.hypergrad import AGGREGATES, example_weights, hypernet_gradients
from fedhyper.hypernet import HyperNetwork


@dataclass
class OuterConfig:
    """The hypernetwork's optimiser; pFedHN's defaults."""

    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-3  # on Φ only; embeddings are not decayed
    embedding_lr: float | None = None  # None: the same as lr
    grad_clip: float = 50.0  # max norm of Φ's gradient; 0 disables
    # How a round's client gradients combine: "sum" (each client counts as one pFedHN step,
    # so clients_per_round=K moves Φ like K reference steps) or "mean" (a K-times smaller step).
    aggregate: str = "sum"

    def validate(self, prefix: str = "strategy.outer") -> None:
        if self.lr <= 0 or (self.embedding_lr is not None and self.embedding_lr <= 0):
            raise ValueError(f"{prefix}.lr={self.lr} and {prefix}.embedding_lr={self.embedding_lr} must be positive")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"{prefix}.aggregate={self.aggregate!r} is unknown; choose one of {', '.join(AGGREGATES)}")


def outer_optimizer(hnet: HyperNetwork, cfg: OuterConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        [
            {"params": hnet.shared_parameters()},
            {"params": hnet.embedding_parameters(), "weight_decay": 0.0, "lr": cfg.embedding_lr or cfg.lr},
        ],
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )


class HyperNetTrainer:
    """Generates a round's weights in one forward and applies the clients' deltas in one backward."""

    def __init__(self, hnet: HyperNetwork, cfg: OuterConfig) -> None:
        self.hnet = hnet
        self.cfg = cfg
        self.optimizer = outer_optimizer(hnet, cfg)
        self.device = next(hnet.parameters()).device

    @torch.no_grad()
    def generate(self, client_ids: list[int]) -> dict[str, torch.Tensor]:
        """Detached weights for ``client_ids``: name -> [B, *shape]."""
        return self.hnet(torch.as_tensor(client_ids, device=self.device))

    def step(self, client_ids: list[int], trained: dict[str, torch.Tensor], num_examples: list[int]) -> float:
        """One outer step from the clients' trained weights; returns Φ's gradient norm."""
        ids = torch.as_tensor(client_ids, device=self.device)
        emb = self.hnet.embeddings(ids)  # [B, emb_dim]
        generated = self.hnet.generate(emb)
        deltas = {n: trained[n].to(self.device) - generated[n].detach() for n in generated}
        shared = self.hnet.shared_parameters()
        shared_grads, emb_grads = hypernet_gradients(
            generated, deltas, example_weights(num_examples, self.cfg.aggregate).to(self.device), shared, emb
        )
        for p, g in zip(shared, shared_grads, strict=True):
            p.grad = g
        table = self.hnet.embeddings.weight
        table.grad = torch.zeros_like(table).index_add_(0, ids, emb_grads)
        norm = torch.nn.utils.clip_grad_norm_(shared, self.cfg.grad_clip or float("inf"))
        self.optimizer.step()
        return float(norm)
