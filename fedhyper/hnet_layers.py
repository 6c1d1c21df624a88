"""The hypernetwork's parts: a body that turns a condition into features for each output slot,
and an output layout that turns those features into one flat vector of target weights.

A slot is what one output unit generates: a target tensor (``per_tensor``), a chunk
(``chunked``) or everything (``flat``). The MLP body computes one feature vector per client
and shares it among the slots, except for chunks, which it tells apart by a learned chunk
embedding appended to the condition (hypnettorch's chunked MLP). The attention body gives
every slot its own learned token and lets the tokens and the condition attend to each other.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from fedhyper.hypernet import HyperNetConfig

OUTPUTS = ("per_tensor", "chunked", "flat")
BODIES = ("mlp", "attention")


def output_slots(output: str, sizes: list[int], chunk_size: int) -> int:
    """How many slots an output layout has for target tensors of ``sizes`` elements."""
    if output == "per_tensor":
        return len(sizes)
    if output == "chunked":
        return math.ceil(sum(sizes) / chunk_size)
    return 1


# --- bodies: condition [B, cond_dim] -> features [B, slots, hidden] ---------------------------
class MLPBody(nn.Module):
    """pFedHN's body: a linear layer from the condition, then ``n_hidden`` ReLU + linear blocks."""

    def __init__(self, cond_dim: int, hidden: int, n_hidden: int, slots: int, slot_dim: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(cond_dim + slot_dim, hidden)]
        for _ in range(n_hidden):
            layers += [nn.ReLU(), nn.Linear(hidden, hidden)]
        self.mlp = nn.Sequential(*layers)
        self.slots = slots
        # Chunks need telling apart; heads of their own (per_tensor, flat) do not.
        self.slot_embeddings = nn.Parameter(torch.randn(slots, slot_dim)) if slot_dim else None

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        batch = condition.shape[0]
        if self.slot_embeddings is None:
            return self.mlp(condition).unsqueeze(1).expand(batch, self.slots, -1)  # one vector, shared
        slots = self.slot_embeddings.unsqueeze(0).expand(batch, -1, -1)  # [B, S, slot_dim]
        return self.mlp(torch.cat([condition.unsqueeze(1).expand(-1, self.slots, -1), slots], dim=2))


class AttentionBody(nn.Module):
    """A small transformer over one token for the condition and one learned token per slot."""

    def __init__(self, cond_dim: int, hidden: int, slots: int, layers: int, heads: int) -> None:
        super().__init__()
        self.condition_token = nn.Linear(cond_dim, hidden)
        self.slot_tokens = nn.Parameter(torch.randn(slots, hidden) / math.sqrt(hidden))
        layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        # The encoder ends in a LayerNorm (unit-variance features), which with PyTorch's default heads
        # would generate weights of std ~0.6; a ReLU + linear readout brings the features to the MLP
        # body's scale (variance ~1/18 vs ~1/20), so both start from comparable target weights.
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        batch = condition.shape[0]
        tokens = torch.cat(
            [self.condition_token(condition).unsqueeze(1), self.slot_tokens.unsqueeze(0).expand(batch, -1, -1)], dim=1
        )  # [B, 1 + S, hidden]
        return self.readout(self.encoder(tokens)[:, 1:])


def build_body(cfg: HyperNetConfig, cond_dim: int, slots: int) -> nn.Module:
    if cfg.body == "attention":
        return AttentionBody(cond_dim, cfg.hidden_dim, slots, cfg.attention_layers, cfg.attention_heads)
    slot_dim = cfg.chunk_emb_dim if cfg.output == "chunked" else 0
    return MLPBody(cond_dim, cfg.hidden_dim, cfg.n_hidden, slots, slot_dim)


# --- outputs: features [B, slots, hidden] -> flat weights [B, P] ----------------------------
class PerTensorOutput(nn.Module):
    """pFedHN's layout: one linear head per target tensor."""

    def __init__(self, hidden: int, sizes: list[int]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in sizes)
        self.sizes = sizes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(features[:, t]) for t, head in enumerate(self.heads)], dim=1)

    def init_groups(self) -> list[tuple[nn.Linear, list[int], torch.Tensor]]:
        """(head, the slots it reads, [rows, positions]: the flat positions each output row writes)."""
        offsets = [0, *torch.tensor(self.sizes).cumsum(0).tolist()]
        return [(h, [t], torch.arange(offsets[t], offsets[t + 1]).unsqueeze(1)) for t, h in enumerate(self.heads)]


class FlatOutput(nn.Module):
    """One linear head for every weight of the target."""

    def __init__(self, hidden: int, total: int) -> None:
        super().__init__()
        self.head = nn.Linear(hidden, total)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features[:, 0])

    def init_groups(self) -> list[tuple[nn.Linear, list[int], torch.Tensor]]:
        return [(self.head, [0], torch.arange(self.head.out_features).unsqueeze(1))]


class ChunkedOutput(nn.Module):
    """One generator shared by every chunk: its size follows the chunk size, not the target's."""

    def __init__(self, hidden: int, total: int, chunk_size: int) -> None:
        super().__init__()
        self.generator = nn.Linear(hidden, chunk_size)
        self.total = total
        self.chunks = math.ceil(total / chunk_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.generator(features).flatten(1)[:, : self.total]  # [B, chunks * chunk] -> [B, P]

    def init_groups(self) -> list[tuple[nn.Linear, list[int], torch.Tensor]]:
        chunk = self.generator.out_features
        rows = torch.arange(chunk).unsqueeze(1) + chunk * torch.arange(self.chunks).unsqueeze(0)  # [chunk, chunks]
        return [(self.generator, list(range(self.chunks)), rows)]  # positions >= total are padding


def build_output(cfg: HyperNetConfig, sizes: list[int]) -> nn.Module:
    if cfg.output == "per_tensor":
        return PerTensorOutput(cfg.hidden_dim, sizes)
    if cfg.output == "chunked":
        return ChunkedOutput(cfg.hidden_dim, sum(sizes), cfg.chunk_size)
    return FlatOutput(cfg.hidden_dim, sum(sizes))
