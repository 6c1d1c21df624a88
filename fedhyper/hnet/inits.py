"""The hypernetwork's initialisation (``hnet.init``): PyTorch's default, hyperfan-in/out, or its base.

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

``hnet.init=base`` answers the same question another way, for a hypernetwork with a shared
base (``hnet.base``, θ_i = θ_0 + h(v_i; Φ)): θ_0 is drawn as PyTorch draws the target's own
layers (a uniform of bound 1/√fan_in, the variances above for fan-in) and the output layers
start at zero, so h = 0 and every client is sent the same network in the first round, as FedAvg
sends its one model. The hypernetwork then learns each client's offset from a start the clients
share instead of one random network per client. The output layers get their gradient from the
first step (the body's features are not zero); the body and the embeddings from the second.
Like hyperfan it reads only the target's shapes: a tensor that PyTorch starts elsewhere (a
normalisation layer's scale, at 1) starts at the fan-in variance here.

An init is a subclass of ``Init``: its class method ``apply(parts)`` changes the built ``Parts``
in place (``parts.base`` is θ_0's parameter, or None without one), and ``check(cfg, prefix)``,
as every part's, refuses the options it cannot start (``hnet.init=base`` without ``hnet.base``).
Register a new one with ``@INITS.register(name)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fedhyper.hnet.config import INITS, HyperNetConfig
from fedhyper.hnet.outputs import InitGroup, Output

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


def output_groups(output: Output, init: str) -> list[InitGroup]:
    """``output``'s init groups; a ValueError naming ``init`` when the output does not give them."""
    groups = output.init_groups()
    if groups is None:
        raise ValueError(f"hnet.init={init} needs init_groups, which {type(output).__name__} does not give")
    return groups


@torch.no_grad()
def hyperfan_(
    body: nn.Module, output: Output, target_shapes: dict[str, torch.Size], cond_dim: int, fan: str, samples: int = 512
) -> None:
    """Re-initialise ``output``'s layers in place for hyperfan-``fan``, measuring ``body``'s features."""
    groups = output_groups(output, f"hyperfan_{fan}")
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


@dataclass(frozen=True)
class Parts:
    """What an init changes in place: the built body and output, the target's shapes, θ_0 (None without a base)."""

    body: nn.Module
    output: Output
    target_shapes: dict[str, torch.Size]
    cond_dim: int
    base: nn.Parameter | None


class Init:
    """One ``hnet.init`` choice: ``apply`` starts the built parts, ``check`` refuses options it cannot start."""

    @classmethod
    def check(cls, cfg: HyperNetConfig, prefix: str) -> None:
        """Raise ValueError naming the options this init cannot start; every option by default."""

    @classmethod
    def apply(cls, parts: Parts) -> None:
        """Change ``parts`` in place; as it is here, nothing changes and the parts keep PyTorch's start."""


@INITS.register("default")
class PyTorchDefault(Init):
    """PyTorch's own initialisation of every layer, as built: ``Init.apply`` changes nothing."""


class Hyperfan(Init):
    fan: ClassVar[str]

    @classmethod
    def apply(cls, parts: Parts) -> None:
        hyperfan_(parts.body, parts.output, parts.target_shapes, parts.cond_dim, fan=cls.fan)


@INITS.register("hyperfan_in")
class HyperfanIn(Hyperfan):
    fan = "in"


@INITS.register("hyperfan_out")
class HyperfanOut(Hyperfan):
    fan = "out"


@INITS.register("base")
class FromBase(Init):
    """The base drawn as PyTorch draws the target, the output layers at zero: every client starts at θ_0."""

    @classmethod
    def check(cls, cfg: HyperNetConfig, prefix: str) -> None:
        if not cfg.base:
            raise ValueError(f"{prefix}.init=base starts the shared base, which needs {prefix}.base=true")

    @classmethod
    @torch.no_grad()
    def apply(cls, parts: Parts) -> None:
        bound = (3 * target_variances(parts.target_shapes, "in")).sqrt()  # [P]
        parts.base.copy_((2 * torch.rand_like(parts.base) - 1) * bound)
        for linear, _, _ in output_groups(parts.output, "base"):
            linear.weight.zero_()
            linear.bias.zero_()
