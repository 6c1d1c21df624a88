"""The hypernetwork's input (``hnet.input``): a conditioner turns client ids, and a per-call input
where it needs one, into the condition [B, dim] that the body reads.

- ``embedding`` (pFedHN): a learned row per client. The table is private: each row belongs to
  one client, is kept out of Φ and is not weight-decayed.
- ``noise``: the client's row with ``hnet.noise_dim`` Gaussian numbers appended, drawn afresh for
  every call (``sample``, from the caller's seeded generator): an ensemble of ``members`` models
  per client at evaluation.
- ``data`` (PeFLL): a descriptor each client computes from its own data (``fedhyper.descriptor``),
  given per call; no parameters here.

A condition is built in two steps so that the outer step can take each client's own gradient:
``leaf`` is the per-client tensor [B, d] a client owns (its table row, or its descriptor) and
``condition`` builds the body's input from it.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

from fedhyper.hnet.config import INPUTS, HyperNetConfig


class Conditioner(nn.Module, metaclass=abc.ABCMeta):
    """Client ids [B] [+ a per-call input [B, extra_dim]] -> condition [B, dim].

    Built as ``Conditioner(cfg, num_clients)``; register a new one with ``@INPUTS.register(name)``.
    """

    dim: int  # size of the condition
    extra_dim: int = 0  # size of the per-call input each call needs (noise, a descriptor); 0: none
    members: int = 1  # models generated per client at evaluation: more than one for a random condition

    def __init__(self) -> None:
        super().__init__()
        self.table: nn.Embedding | None = None  # per-client rows: private parameters, not Φ

    @classmethod
    def check(cls, cfg: HyperNetConfig, prefix: str) -> None:
        """Raise ValueError for options of ``cfg`` this input cannot be built with (none by default)."""

    @property
    def private(self) -> bool:
        """Whether it holds per-client parameters (the rows of ``table``)."""
        return self.table is not None

    def private_parameters(self) -> list[nn.Parameter]:
        return [] if self.table is None else list(self.table.parameters())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @abc.abstractmethod
    def leaf(self, client_ids: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """The per-client tensor [B, d] each client's own gradient is taken of.

        Rows of ``table`` for a conditioner that has one; otherwise the per-call input itself (a
        descriptor, whose gradient goes back to the client), or a fixed function of the ids.
        """

    def condition(self, leaf: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """The body's input [B, dim] from the clients' ``leaf`` [B, d] and the per-call input."""
        return leaf

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor | None:
        """A per-call input [batch, extra_dim] from ``generator``; None if the caller gives it or none is needed."""
        return None

    def forward(self, client_ids: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.condition(self.leaf(client_ids, extra), extra)


@INPUTS.register("embedding")
class EmbeddingConditioner(Conditioner):
    """pFedHN's input: a learned embedding per client, ``cfg.resolved_embedding_dim`` numbers each."""

    def __init__(self, cfg: HyperNetConfig, num_clients: int) -> None:
        super().__init__()
        self.table = nn.Embedding(num_clients, cfg.resolved_embedding_dim(num_clients))
        self.dim = self.table.embedding_dim

    def leaf(self, client_ids: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        if extra is not None and not self.extra_dim:
            raise ValueError(f"{type(self).__name__} takes no per-call input: pass only the client ids")
        return self.table(client_ids)  # [B, d]


@INPUTS.register("data")
class DescriptorConditioner(Conditioner):
    """PeFLL's input: the descriptor v_i [d] each client computes from its data, passed per call."""

    def __init__(self, cfg: HyperNetConfig, num_clients: int) -> None:
        super().__init__()
        self.dim = self.extra_dim = cfg.resolved_embedding_dim(num_clients)

    def leaf(self, client_ids: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        if extra is None:
            raise ValueError("hnet.input=data has no embedding table: pass the clients' descriptors [B, d] per call")
        return extra


@INPUTS.register("noise")
class NoiseConditioner(EmbeddingConditioner):
    """The client's embedding with a fresh noise vector appended: a distribution of models per client."""

    def __init__(self, cfg: HyperNetConfig, num_clients: int) -> None:
        super().__init__(cfg, num_clients)
        self.extra_dim = cfg.noise_dim
        self.dim += cfg.noise_dim
        self.members = cfg.noise_samples

    def condition(self, leaf: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        if extra is None:
            raise ValueError("hnet.input=noise needs a noise vector per client (NoiseConditioner.sample draws them)")
        return torch.cat([leaf, extra], dim=1)  # [B, d + noise_dim]

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(batch, self.extra_dim, generator=generator)
