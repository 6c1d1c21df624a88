"""The hypernetwork's body (``hnet.body``): condition [B, cond_dim] -> one feature vector per
output slot, [B, slots, hidden].

A slot is what the output reads one feature vector for: a target tensor, a chunk, a component
(``fedhyper.hnet.outputs``). The MLP body computes one feature vector per client and shares it
among the slots; the attention body gives each slot a learned token of its own. An output whose
slots must be told apart (chunks, components) gets a body that does not tell them apart itself
wrapped in ``SlotEmbedded``, as hypnettorch's ChunkedHMLP wraps its HMLP: any body works under it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedhyper.hnet.config import BODIES, HyperNetConfig


class Body(nn.Module):
    """condition [B, cond_dim] -> features [B, slots, cfg.hidden_dim].

    Built as ``Body(cfg, cond_dim, slots)``; register a new one with ``@BODIES.register(name)``.
    """

    # Whether its slots' features differ by construction (a learned token per slot); if not, an
    # output that needs them told apart gets it wrapped in SlotEmbedded.
    tells_slots_apart: bool = False

    @classmethod
    def check(cls, cfg: HyperNetConfig, prefix: str) -> None:
        """Raise ValueError for options of ``cfg`` this body cannot be built with (none by default)."""


@BODIES.register("mlp")
class MLPBody(Body):
    """pFedHN's body: a linear layer from the condition, then ``n_hidden`` ReLU + linear blocks."""

    def __init__(self, cfg: HyperNetConfig, cond_dim: int, slots: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(cond_dim, cfg.hidden_dim)]
        for _ in range(cfg.n_hidden):
            layers += [nn.ReLU(), nn.Linear(cfg.hidden_dim, cfg.hidden_dim)]
        self.mlp = nn.Sequential(*layers)
        self.slots = slots

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.mlp(condition).unsqueeze(1).expand(condition.shape[0], self.slots, -1)  # one vector, shared


@BODIES.register("attention")
class AttentionBody(Body):
    """A small transformer over one token for the condition and one learned token per slot."""

    tells_slots_apart = True

    def __init__(self, cfg: HyperNetConfig, cond_dim: int, slots: int) -> None:
        super().__init__()
        hidden = cfg.hidden_dim
        self.condition_token = nn.Linear(cond_dim, hidden)
        self.slot_tokens = nn.Parameter(torch.randn(slots, hidden) / math.sqrt(hidden))
        layer = nn.TransformerEncoderLayer(
            hidden, cfg.attention_heads, dim_feedforward=2 * hidden, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.attention_layers, enable_nested_tensor=False)
        # The encoder ends in a LayerNorm (unit-variance features), which with PyTorch's default heads
        # would generate weights of std ~0.6; a ReLU + linear readout brings the features to the MLP
        # body's scale (variance ~1/18 vs ~1/20), so both start from comparable target weights.
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    @classmethod
    def check(cls, cfg: HyperNetConfig, prefix: str) -> None:
        if cfg.hidden_dim % cfg.attention_heads:
            raise ValueError(
                f"{prefix}.attention_heads={cfg.attention_heads} must divide {prefix}.hidden_dim={cfg.hidden_dim}"
            )

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        batch = condition.shape[0]
        tokens = torch.cat(
            [self.condition_token(condition).unsqueeze(1), self.slot_tokens.unsqueeze(0).expand(batch, -1, -1)], dim=1
        )  # [B, 1 + S, hidden]
        return self.readout(self.encoder(tokens)[:, 1:])


class SlotEmbedded(nn.Module):
    """Any body, run once per slot on the condition with that slot's learned embedding appended.

    ``body`` is built for one slot and a condition ``slot_dim`` longer; this wrapper owns the
    slot embeddings [slots, slot_dim], drawn N(0, 1) after the body's own parameters.
    """

    def __init__(self, body: nn.Module, slots: int, slot_dim: int) -> None:
        super().__init__()
        self.body = body
        self.slot_embeddings = nn.Parameter(torch.randn(slots, slot_dim))

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        batch, slots = condition.shape[0], self.slot_embeddings.shape[0]
        rows = torch.cat(
            [condition.unsqueeze(1).expand(-1, slots, -1), self.slot_embeddings.unsqueeze(0).expand(batch, -1, -1)],
            dim=2,
        )  # [B, S, cond_dim + slot_dim]
        return self.body(rows.flatten(0, 1)).view(batch, slots, -1)  # [B * S, 1, hidden] -> [B, S, hidden]


def build_body(body_cls: type[Body], cfg: HyperNetConfig, cond_dim: int, slots: int, slot_dim: int) -> nn.Module:
    """``body_cls`` for ``slots`` slots; one slot of it inside ``SlotEmbedded`` when the output needs its
    slots told apart (``slot_dim`` > 0) and the body does not tell them apart itself."""
    if not slot_dim or body_cls.tells_slots_apart:
        return body_cls(cfg, cond_dim, slots)
    return SlotEmbedded(body_cls(cfg, cond_dim + slot_dim, 1), slots, slot_dim)
