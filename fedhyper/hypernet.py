"""The hypernetwork that generates every client's target weights, composed of one choice per part.

A ``HyperNetwork`` is conditioner -> body -> output (``fedhyper.hnet``), each chosen by name in
``HyperNetConfig`` from its registry (``fedhyper.hnet.config``):

- the conditioner (``hnet.input``) turns client ids [+ a per-call input: noise, a descriptor]
  into the condition [B, d];
- the body (``hnet.body``) turns the condition into one feature vector per output slot; when the
  output's slots must be told apart and the body does not do it itself, the body is wrapped in
  ``SlotEmbedded`` (chunking as a wrapper, after hypnettorch's ChunkedHMLP around HMLP);
- the output (``hnet.output``) turns the features into every target weight;
- an init (``hnet.init``) may re-initialise the built parts (hyperfan, or the base).

The interface is small (after hypnettorch's ``HyperNetInterface``): ``target_shapes``, a
batched ``forward(client_ids) -> {name: [B, *shape]}`` and a split of the shared parameters Φ
(body, output, any shared part of the conditioner) from the per-client embeddings v_i (the
conditioner's private table), which the outer optimiser treats differently (no weight decay on
embeddings).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedhyper.hnet.bodies import build_body
from fedhyper.hnet.config import BODIES, INITS, INPUTS, OUTPUTS, HyperNetConfig
from fedhyper.hnet.inits import Parts

__all__ = ["HyperNetConfig", "HyperNetwork"]


class HyperNetwork(nn.Module):
    """Maps clients to the weights of their target networks, for a batch of clients.

    Its parameters are made in a fixed order, which the seeded default design relies on to draw
    what pFedHN always drew: the conditioner's table, the body, the output, then any init's draws.
    """

    def __init__(self, target_shapes: dict[str, torch.Size], num_clients: int, cfg: HyperNetConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.target_shapes = dict(target_shapes)
        self.num_clients = num_clients
        self.sizes = [math.prod(s) for s in self.target_shapes.values()]
        output_cls = OUTPUTS.get(cfg.output)
        slots, slot_dim = output_cls.layout(cfg, self.sizes)
        self.conditioner = INPUTS.get(cfg.input)(cfg, num_clients)
        self.body = build_body(BODIES.get(cfg.body), cfg, self.conditioner.dim, slots, slot_dim)
        self.output = output_cls(cfg, self.sizes)
        # Zeros draw nothing: a hypernetwork with a base generates what the same seed's would without.
        self.base = nn.Parameter(torch.zeros(sum(self.sizes))) if cfg.base else None
        INITS.get(cfg.init).apply(Parts(self.body, self.output, self.target_shapes, self.conditioner.dim, self.base))
        if cfg.spectral_norm:
            for module in [*self.body.modules(), *self.output.modules()]:
                if type(module) is nn.Linear:
                    nn.utils.parametrizations.spectral_norm(module)

    def generate(self, condition: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weights for each row of ``condition`` [B, conditioner.dim]: name -> [B, *shape]."""
        flat = self.output(self.body(condition))  # [B, P]
        if self.base is not None:
            flat = flat + self.base
        parts = flat.split(self.sizes, dim=1)
        batch = condition.shape[0]
        return {name: p.view(batch, *shape) for (name, shape), p in zip(self.target_shapes.items(), parts, strict=True)}

    def forward(self, client_ids: torch.Tensor, extra: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Weights of the clients ``client_ids`` [B]: name -> [B, *shape].

        ``extra`` [B, conditioner.extra_dim] is the per-call input the conditioner needs (noise,
        descriptors), if any.
        """
        return self.generate(self.conditioner(client_ids, extra))

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The per-client embeddings: the conditioner's private table, if it has one."""
        return self.conditioner.private_parameters()

    def base_parameters(self) -> list[nn.Parameter]:
        """The shared base θ_0 (``hnet.base``), which the outer optimiser steps apart from the rest of Φ."""
        return [] if self.base is None else [self.base]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Φ: every parameter but the per-client embeddings (the base included)."""
        private = {id(p) for p in self.embedding_parameters()}
        return [p for p in self.parameters() if id(p) not in private]

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts: Φ, the embedding table, and one target model."""
        return {
            "hnet_shared": sum(p.numel() for p in self.shared_parameters()),
            "hnet_embeddings": sum(p.numel() for p in self.embedding_parameters()),
            "target": sum(self.sizes),
        }
