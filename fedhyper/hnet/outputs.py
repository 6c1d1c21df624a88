"""The hypernetwork's output (``hnet.output``): features [B, slots, hidden] -> every target
weight, flat in target order, [B, P].

An output says what its slots are and whether they must be told apart by a learned embedding
(``layout``): then a body that does not tell slots apart itself (the MLP; not the attention body,
whose slot tokens do) runs inside ``fedhyper.hnet.bodies.SlotEmbedded``, once per slot.

- ``per_tensor`` (pFedHN): one linear head per target tensor, each reading its tensor's slot.
  With the MLP body every slot holds the same feature vector, so the heads together are one
  linear map from it: the former ``flat`` output (one head for all weights) was this same model
  under another name, and was removed.
- ``chunked``: the flat weight vector cut into chunks of ``hnet.chunk_size``, each told apart by a
  learned chunk embedding (``hnet.chunk_emb_dim``); one generator, shared by every chunk, maps a
  chunk's features to its weights. Its size follows the chunk size, not the target's.
- ``component`` (the survey's component-wise generation): one generator shared by every target
  tensor, told apart by a learned embedding per tensor (``hnet.component_emb_dim``). The generator
  is a linear map to as many numbers as the largest tensor has; tensor t takes the first |t| of
  what it generates from t's features, so row r of the generator writes weight r of every tensor
  that has one. Its size follows the largest tensor, not the whole target.
"""

from __future__ import annotations

import abc
import math
from typing import NamedTuple

import torch
from torch import nn

from fedhyper.hnet.config import OUTPUTS, HyperNetConfig


class InitGroup(NamedTuple):
    """An output layer and what it writes, for initialisations that scale rows by their targets."""

    linear: nn.Linear
    slots: list[int]  # the slots whose features it reads
    positions: torch.Tensor  # [rows, k]: the flat target positions each row writes; >= P marks padding


class Output(nn.Module, metaclass=abc.ABCMeta):
    """features [B, slots, hidden] -> flat weights [B, P], P = sum(sizes).

    Built as ``Output(cfg, sizes)``; register a new one with ``@OUTPUTS.register(name)``.
    """

    @classmethod
    def check(cls, cfg: HyperNetConfig, prefix: str) -> None:
        """Raise ValueError for options of ``cfg`` this output cannot be built with (none by default)."""

    @classmethod
    @abc.abstractmethod
    def layout(cls, cfg: HyperNetConfig, sizes: list[int]) -> tuple[int, int]:
        """(slots, slot_dim): feature vectors it reads per client, and the size of the learned embedding
        that tells each slot apart (0: none). Known before it is built, as the body is built first."""

    def init_groups(self) -> list[InitGroup] | None:
        """Its output layers and the target positions each writes, which hnet.init=hyperfan_* scales;
        None (an output that does not say) leaves hyperfan unavailable for it."""
        return None


def offsets(sizes: list[int]) -> list[int]:
    """Where each tensor starts in the flat target vector, and where the last ends: [T + 1]."""
    return [0, *torch.tensor(sizes).cumsum(0).tolist()]


@OUTPUTS.register("per_tensor")
class PerTensorOutput(Output):
    """pFedHN's layout: one linear head per target tensor."""

    def __init__(self, cfg: HyperNetConfig, sizes: list[int]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(cfg.hidden_dim, n) for n in sizes)
        self.sizes = sizes

    @classmethod
    def layout(cls, cfg: HyperNetConfig, sizes: list[int]) -> tuple[int, int]:
        return len(sizes), 0  # heads of their own: the slots need not differ

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(features[:, t]) for t, head in enumerate(self.heads)], dim=1)

    def init_groups(self) -> list[InitGroup]:
        start = offsets(self.sizes)
        return [InitGroup(h, [t], torch.arange(start[t], start[t + 1]).unsqueeze(1)) for t, h in enumerate(self.heads)]


@OUTPUTS.register("chunked")
class ChunkedOutput(Output):
    """One generator shared by every chunk of ``chunk_size`` weights: its size follows the chunk, not the target."""

    def __init__(self, cfg: HyperNetConfig, sizes: list[int]) -> None:
        super().__init__()
        self.generator = nn.Linear(cfg.hidden_dim, cfg.chunk_size)
        self.total = sum(sizes)
        self.chunks = math.ceil(self.total / cfg.chunk_size)

    @classmethod
    def layout(cls, cfg: HyperNetConfig, sizes: list[int]) -> tuple[int, int]:
        return math.ceil(sum(sizes) / cfg.chunk_size), cfg.chunk_emb_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.generator(features).flatten(1)[:, : self.total]  # [B, chunks * chunk] -> [B, P]

    def init_groups(self) -> list[InitGroup]:
        chunk = self.generator.out_features
        rows = torch.arange(chunk).unsqueeze(1) + chunk * torch.arange(self.chunks).unsqueeze(0)  # [chunk, chunks]
        return [InitGroup(self.generator, list(range(self.chunks)), rows)]  # positions >= total are padding


@OUTPUTS.register("component")
class ComponentOutput(Output):
    """One generator shared by every target tensor, as long as the largest; tensor t keeps its first |t| outputs."""

    def __init__(self, cfg: HyperNetConfig, sizes: list[int]) -> None:
        super().__init__()
        self.generator = nn.Linear(cfg.hidden_dim, max(sizes))
        self.sizes = sizes

    @classmethod
    def layout(cls, cfg: HyperNetConfig, sizes: list[int]) -> tuple[int, int]:
        return len(sizes), cfg.component_emb_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        generated = self.generator(features)  # [B, T, max size]
        return torch.cat([generated[:, t, :n] for t, n in enumerate(self.sizes)], dim=1)

    def init_groups(self) -> list[InitGroup]:
        start, rows = offsets(self.sizes), torch.arange(self.generator.out_features)
        # Row r writes weight r of each tensor that has one; a shorter tensor's place is padding (>= P).
        positions = [torch.where(rows < n, start[t] + rows, start[-1]) for t, n in enumerate(self.sizes)]
        return [InitGroup(self.generator, list(range(len(self.sizes))), torch.stack(positions, dim=1))]
