"""PeFLL's client descriptor: an embedding network ψ that each client averages over its own data.

Scott, Zakerinia, Lampert. "PeFLL: Personalized Federated Learning by Learning to Learn".
ICLR 2024. https://arxiv.org/abs/2306.05515

Client i describes itself by v_i = mean_j ψ(x_j, y_j) over its training examples; the server's
hypernetwork (``hnet.input=data``) maps v_i to the client's weights. ψ belongs to the server and
learns with the hypernetwork: the server sends each client dL/dv_i, the client returns the
vector-Jacobian product (∂v_i/∂ψ)ᵀ dL/dv_i (``descriptor_vjp``), and the server aggregates those.
A client that never trained gets its model from one description, without training.

A description reads at most ``MAX_EXAMPLES`` examples, always the same ones for a given seed, so
its cost is bounded and the backward pass sees exactly the examples the forward pass saw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_EXAMPLES = 512  # examples a description averages over: a seeded subset beyond this
HIDDEN = 64  # ψ's hidden units for the image


class DescriptorNet(nn.Module):
    """ψ(x, y): the flattened image through one hidden layer, joined with one-hot(y), to ``dim``."""

    def __init__(self, in_features: int, num_classes: int, dim: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Linear(in_features, hidden)
        self.out = nn.Linear(hidden + num_classes, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x [n, C, H, W], y [n] -> [n, dim]."""
        h = torch.relu(self.features(x.flatten(1)))  # [n, hidden]
        onehot = F.one_hot(y.long(), self.num_classes).to(h.dtype)  # [n, classes]
        return self.out(torch.cat([h, onehot], dim=1))

    @classmethod
    def from_weights(cls, weights: dict[str, torch.Tensor]) -> DescriptorNet:
        """The ψ whose weights these are (a client's copy); sizes are read from the tensors' shapes."""
        if set(weights) != {"features.weight", "features.bias", "out.weight", "out.bias"}:
            raise ValueError(f"descriptor weights must be ψ's four tensors, got {sorted(weights)}")
        hidden, in_features = weights["features.weight"].shape
        dim, joint = weights["out.weight"].shape
        with torch.device("meta"):  # no initialisation to throw away, no draw from the global RNG
            net = cls(in_features, joint - hidden, dim, hidden)
        net.load_state_dict(weights, assign=True)
        return net


def example_subset(n: int, max_examples: int = MAX_EXAMPLES, seed: int = 0) -> torch.Tensor:
    """Indices of the examples a description reads: the first ``max_examples`` of a seeded permutation."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_examples]


def describe(
    psi: DescriptorNet, x: torch.Tensor, y: torch.Tensor, max_examples: int = MAX_EXAMPLES, seed: int = 0
) -> torch.Tensor:
    """The descriptor v [dim]: ψ's mean over (a seeded subset of at most ``max_examples`` of) x, y."""
    if len(y) == 0:
        raise ValueError("a client with no training examples cannot describe itself")
    idx = example_subset(len(y), max_examples, seed).to(y.device)
    return psi(x[idx], y[idx]).mean(dim=0)


def descriptor_vjp(
    psi: DescriptorNet,
    x: torch.Tensor,
    y: torch.Tensor,
    grad_v: torch.Tensor,
    max_examples: int = MAX_EXAMPLES,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """(∂v/∂ψ)ᵀ grad_v for each of ψ's tensors: the client's share of ψ's gradient, given dL/dv [dim]."""
    params = dict(psi.named_parameters())
    v = describe(psi, x, y, max_examples, seed)
    grads = torch.autograd.grad(v, list(params.values()), grad_outputs=grad_v.to(v))
    return dict(zip(params, grads, strict=True))
