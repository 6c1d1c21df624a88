"""Layer-wise aggregation weights from per-client hypernetworks (pFedLA's server side).

Client i's hypernetwork maps its embedding e_i to α_i ∈ R^{L×N}: for each of the target's
L layers, a distribution over the N clients' stored models. Its personalised model is
θ̄_i^l = Σ_j α_i[l, j] θ_j^l. All N hypernetworks are held as batched tensors, so a
round's clients are generated in one ``einsum``.
"""

from __future__ import annotations

import torch
from torch import nn


def layer_index(names: list[str]) -> dict[str, int]:
    """Each tensor's layer: tensors of one module (``conv1.weight``, ``conv1.bias``) share one."""
    layers: dict[str, int] = {}
    for name in names:
        layers.setdefault(name.rsplit(".", 1)[0], len(layers))
    return {name: layers[name.rsplit(".", 1)[0]] for name in names}


class LayerwiseHyperNets(nn.Module):
    """N per-client MLPs e_i -> softmax logits [L, N]; parameters batched over clients."""

    def __init__(self, num_clients: int, num_layers: int, embedding_dim: int = 100, hidden_dim: int = 100) -> None:
        super().__init__()
        n, d, h = num_clients, embedding_dim, hidden_dim
        self.num_clients, self.num_layers = n, num_layers
        self.embeddings = nn.Parameter(torch.randn(n, d))  # [N, d]
        self.w1 = nn.Parameter(torch.randn(n, d, h) / d**0.5)  # [N, d, h]
        self.b1 = nn.Parameter(torch.zeros(n, h))
        # Zero output weights: every client starts by averaging all models equally (FedAvg).
        self.w2 = nn.Parameter(torch.zeros(n, h, num_layers * n))  # [N, h, L*N]
        self.b2 = nn.Parameter(torch.zeros(n, num_layers * n))

    def forward(self, client_ids: torch.Tensor) -> torch.Tensor:
        """Aggregation weights [B, L, N] for the clients ``client_ids``; each row sums to 1."""
        e = self.embeddings[client_ids]  # [B, d]
        hidden = torch.relu(torch.einsum("bd,bdh->bh", e, self.w1[client_ids]) + self.b1[client_ids])
        logits = torch.einsum("bh,bho->bo", hidden, self.w2[client_ids]) + self.b2[client_ids]
        return torch.softmax(logits.view(-1, self.num_layers, self.num_clients), dim=-1)


def personalise(
    alpha: torch.Tensor, models: dict[str, torch.Tensor], layer_of: dict[str, int]
) -> dict[str, torch.Tensor]:
    """θ̄[b] = Σ_j alpha[b, layer, j] models[j] for every tensor: name -> [B, *shape]."""
    return {
        name: torch.einsum("bn,n...->b...", alpha[:, layer_of[name], :], stacked) for name, stacked in models.items()
    }
