"""The hypernetwork's initialisation (``hnet.init``): PyTorch's default, or hyperfan-in/out.

Hyperfan: Chang, Sacramento, Zenke. "Principled Weight Initialization for Hypernetworks". ICLR 2020.

With PyTorch's default initialisation the generated weights' variance depends on the
hypernetwork's widths, not on the target layer's fan: every target layer starts at the same
scale, whatever its fan-in. A generated weight is w_j = Σ_k H_jk f_k (the output layer's bias
is zeroed), so Var(w_j) = hidden · Var(H_j) · E[f²] for zero-mean H. Choosing
Var(H_j) = Var*(w_j) / (hidden · E[f²]) gives each weight its target variance Var*:
1 / (3 fan_in) for hyperfan-in — what PyTorch's own layers start with (a uniform of bound
1/√fan_in) — or 1 / (3 fan_out) for hyperfan-out. Biases get 1 / (3 fan_in) of their layer
in both. Instead of the paper's closed form for E[f²], it is measured on the body at
initialisation with conditions drawn as embeddings and noise start, N(0, 1).

The chunked and component outputs share one generator row among positions of different
tensors; a row gets the mean target variance of the positions it writes, so they match on
average only.

An init is a function ``init(body, output, target_shapes, cond_dim)`` that changes the built
parts in place; register a new one with ``@INITS.register(name)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedhyper.hnet.config import INITS
from fedhyper.hnet.outputs import Output

FANS = ("in", "out")


def target_variances(target_shapes: dict[str, torch.Size], fan: str) -> torch.Tensor:
    """The variance each generated weight should start with, flat in target order: [P]."""
    if fan not in FANS:
        raise ValueError(f"fan={fan!r} is unknown; choose in or out")
    parts = []
    for name, shape in target_shapes.items():
        if len(shape) >= 2:
            receptive = math.prod(shape[2:])
            fan_size = (shape[1] if fan == "in" else shape[0]) * receptive
        else:  # a bias: the fan-in of the weight beside it
            weight = target_shapes.get(name.rsplit(".", 1)[0] + ".weight")
            fan_size = math.prod(weight[1:]) if weight is not None and len(weight) >= 2 else shape[0]
        parts.append(torch.full((math.prod(shape),), 1.0 / (3 * fan_size)))
    return torch.cat(parts)


@torch.no_grad()
def hyperfan_(
    body: nn.Module, output: Output, target_shapes: dict[str, torch.Size], cond_dim: int, fan: str, samples: int = 512
) -> None:
    """Re-initialise ``output``'s layers in place for hyperfan-``fan``, measuring ``body``'s features."""
    groups = output.init_groups()
    if groups is None:
        raise ValueError(f"hnet.init=hyperfan_{fan} needs init_groups, which {type(output).__name__} does not give")
    variance = target_variances(target_shapes, fan)
    condition = torch.randn(samples, cond_dim)
    feature_sq = body(condition).pow(2).mean(dim=(0, 2))  # E[f²] per slot: [S]
    for linear, slots, positions in groups:
        valid = positions < len(variance)  # [rows, k]
        row_variance = (variance[positions.clamp(max=len(variance) - 1)] * valid).sum(1) / valid.sum(1)
        head_variance = row_variance / (linear.in_features * feature_sq[slots].mean())
        bound = (3 * head_variance).sqrt().unsqueeze(1)  # a uniform on [-b, b] has variance b² / 3
        linear.weight.copy_((2 * torch.rand_like(linear.weight) - 1) * bound)
        linear.bias.zero_()


@INITS.register("default")
def pytorch_default(body: nn.Module, output: Output, target_shapes: dict[str, torch.Size], cond_dim: int) -> None:
    """PyTorch's own initialisation of every layer, as built: nothing to change."""


@INITS.register("hyperfan_in")
def hyperfan_in(body: nn.Module, output: Output, target_shapes: dict[str, torch.Size], cond_dim: int) -> None:
    hyperfan_(body, output, target_shapes, cond_dim, fan="in")


@INITS.register("hyperfan_out")
def hyperfan_out(body: nn.Module, output: Output, target_shapes: dict[str, torch.Size], cond_dim: int) -> None:
    hyperfan_(body, output, target_shapes, cond_dim, fan="out")
