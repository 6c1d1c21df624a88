"""Hypernetworks that generate every client's target weights from a learned embedding.

The interface is small (after hypnettorch's ``HyperNetInterface``, trimmed to what is
used): ``target_shapes``, a batched ``forward(client_ids)`` and a split of the shared
parameters Φ from the per-client embeddings v_i, which the outer optimiser treats
differently (no weight decay on embeddings, as in pFedHN).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class HyperNetConfig:
    """Size of the hypernetwork; pFedHN's defaults."""

    embedding_dim: int | None = None  # None: 1 + num_clients / 4, as in pFedHN
    # An upper bound on that rule: it gives 2,501 dimensions to 10,000 clients, so the
    # embedding table (N x d) would grow with N squared. None keeps pFedHN's rule.
    max_embedding_dim: int | None = None
    hidden_dim: int = 100
    n_hidden: int = 3  # hidden layers of the MLP body

    def resolved_embedding_dim(self, num_clients: int) -> int:
        dim = self.embedding_dim or int(1 + num_clients / 4)
        return min(dim, self.max_embedding_dim) if self.max_embedding_dim else dim


class HyperNetwork(nn.Module, ABC):
    """Maps client ids to the weights of their target networks, for a batch of clients."""

    def __init__(self, target_shapes: dict[str, torch.Size], num_clients: int, embedding_dim: int) -> None:
        super().__init__()
        self.target_shapes = dict(target_shapes)
        self.num_clients = num_clients
        self.embeddings = nn.Embedding(num_clients, embedding_dim)

    @abstractmethod
    def generate(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weights for each row of ``embeddings`` [B, emb_dim]: name -> [B, *shape]."""

    def forward(self, client_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weights of the clients ``client_ids`` [B]: name -> [B, *shape]."""
        return self.generate(self.embeddings(client_ids))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Φ: every parameter but the client embeddings."""
        return [p for name, p in self.named_parameters() if not name.startswith("embeddings.")]

    def embedding_parameters(self) -> list[nn.Parameter]:
        return list(self.embeddings.parameters())


def mlp_body(in_dim: int, hidden_dim: int, n_hidden: int) -> nn.Sequential:
    """pFedHN's body: a linear layer from the embedding, then ``n_hidden`` ReLU + linear blocks."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
    for _ in range(n_hidden):
        layers += [nn.ReLU(), nn.Linear(hidden_dim, hidden_dim)]
    return nn.Sequential(*layers)


class PerTensorHyperNet(HyperNetwork):
    """pFedHN's layout: an MLP body and one linear head per target tensor."""

    def __init__(self, target_shapes: dict[str, torch.Size], num_clients: int, cfg: HyperNetConfig) -> None:
        super().__init__(target_shapes, num_clients, cfg.resolved_embedding_dim(num_clients))
        self.body = mlp_body(self.embeddings.embedding_dim, cfg.hidden_dim, cfg.n_hidden)
        # ParameterDict keys may not hold dots, so heads are a list in target order.
        self.heads = nn.ModuleList(nn.Linear(cfg.hidden_dim, math.prod(s)) for s in self.target_shapes.values())

    def generate(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(embeddings)  # [B, hidden]
        batch = embeddings.shape[0]
        return {
            name: head(features).view(batch, *shape)
            for (name, shape), head in zip(self.target_shapes.items(), self.heads, strict=True)
        }
