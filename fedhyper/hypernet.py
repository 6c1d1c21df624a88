"""Hypernetworks that generate every client's target weights, chosen along the survey's criteria.

Chauhan et al. ("A Brief Review of Hypernetworks in Deep Learning") sort hypernetworks by what
they take as input, what they output, whether either varies, and their architecture. Here each
is a configuration choice (``HyperNetConfig``) composed into one ``HyperNetwork``:

- input: a learned client embedding (pFedHN), a descriptor each client computes from its own
  data (PeFLL; the descriptor arrives from outside, see ``fedhyper.descriptor``), or the
  embedding with a noise vector appended, sampled afresh each time (an ensemble of models);
- output (``fedhyper.hnet_layers``): one head per target tensor, chunks from one shared
  generator, or one flat head;
- body: an MLP, or a small transformer over one token per output slot;
- initialisation: PyTorch's default or hyperfan-in/out (``fedhyper.hyperfan``).

The interface is small (after hypnettorch's ``HyperNetInterface``): ``target_shapes``, a
batched ``forward(client_ids)`` and a split of the shared parameters Φ from the per-client
embeddings v_i, which the outer optimiser treats differently (no weight decay on embeddings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from fedhyper import hnet_layers
from fedhyper.hyperfan import hyperfan_

INPUTS = ("embedding", "data", "noise")
INITS = ("default", "hyperfan_in", "hyperfan_out")


@dataclass
class HyperNetConfig:
    """The hypernetwork: pFedHN's by default (embedding input, MLP body, a head per tensor)."""

    input: str = "embedding"  # embedding | data | noise
    output: str = "per_tensor"  # per_tensor | chunked | flat
    body: str = "mlp"  # mlp | attention
    init: str = "default"  # default | hyperfan_in | hyperfan_out
    embedding_dim: int | None = None  # None: 1 + num_clients / 4, as in pFedHN (also the descriptor size)
    # pFedHN's rule gives 2,501 dimensions to 10,000 clients, so the embedding table (N x d) would
    # grow with N squared; the cap keeps it linear in N. It leaves federations up to 252 clients as
    # pFedHN sized them. None removes it.
    max_embedding_dim: int | None = 64
    hidden_dim: int = 100
    n_hidden: int = 3  # hidden layers of the MLP body
    chunk_size: int = 4096  # output=chunked: weights generated per chunk
    chunk_emb_dim: int = 8  # output=chunked with body=mlp: size of each chunk's learned embedding
    attention_layers: int = 2  # body=attention: transformer layers
    attention_heads: int = 4  # body=attention: must divide hidden_dim
    noise_dim: int = 8  # input=noise: size of the noise vector appended to the embedding
    noise_samples: int = 8  # input=noise: models sampled per client at evaluation (the ensemble)
    spectral_norm: bool = False  # spectral normalisation of every linear layer of body and output

    def resolved_embedding_dim(self, num_clients: int) -> int:
        dim = self.embedding_dim or int(1 + num_clients / 4)
        return min(dim, self.max_embedding_dim) if self.max_embedding_dim else dim

    def condition_dim(self, num_clients: int) -> int:
        """Size of the vector the body reads: the embedding (or descriptor), plus noise for input=noise."""
        return self.resolved_embedding_dim(num_clients) + (self.noise_dim if self.input == "noise" else 0)

    def validate(self, prefix: str = "hnet") -> None:
        for key, value, allowed in (
            ("input", self.input, INPUTS),
            ("output", self.output, hnet_layers.OUTPUTS),
            ("body", self.body, hnet_layers.BODIES),
            ("init", self.init, INITS),
        ):
            if value not in allowed:
                raise ValueError(f"{prefix}.{key}={value!r} is unknown; choose one of {', '.join(allowed)}")
        if self.body == "attention" and self.hidden_dim % self.attention_heads:
            raise ValueError(
                f"{prefix}.attention_heads={self.attention_heads} must divide {prefix}.hidden_dim={self.hidden_dim}"
            )
        if min(self.hidden_dim, self.chunk_size, self.noise_dim, self.noise_samples) < 1 or self.n_hidden < 0:
            raise ValueError(f"{prefix}: hidden_dim, chunk_size, noise_dim and noise_samples must be >= 1")


class HyperNetwork(nn.Module):
    """Maps client conditions to the weights of their target networks, for a batch of clients.

    ``forward(client_ids)`` covers the embedding inputs; with ``input=data`` there is no
    embedding table and the caller passes descriptors to ``generate``.
    """

    def __init__(self, target_shapes: dict[str, torch.Size], num_clients: int, cfg: HyperNetConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.target_shapes = dict(target_shapes)
        self.num_clients = num_clients
        self.sizes = [math.prod(s) for s in self.target_shapes.values()]
        dim = cfg.resolved_embedding_dim(num_clients)
        self.embeddings = nn.Embedding(num_clients, dim) if cfg.input != "data" else None
        slots = self.output_slots_count = hnet_layers.output_slots(cfg.output, self.sizes, cfg.chunk_size)
        self.body_input_dim = cfg.condition_dim(num_clients)
        self.body = hnet_layers.build_body(cfg, self.body_input_dim, slots)
        self.output = hnet_layers.build_output(cfg, self.sizes)
        if cfg.init != "default":
            hyperfan_(self, fan=cfg.init.removeprefix("hyperfan_"))
        if cfg.spectral_norm:
            for module in [*self.body.modules(), *self.output.modules()]:
                if type(module) is nn.Linear:
                    nn.utils.parametrizations.spectral_norm(module)

    def condition(self, client_ids: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The body's input for ``client_ids`` [B]: their embeddings, with ``noise`` [B, noise_dim] appended."""
        if self.embeddings is None:
            raise ValueError("hnet.input=data has no embedding table: pass the clients' descriptors to generate()")
        return self.with_noise(self.embeddings(client_ids), noise)

    def with_noise(self, embeddings: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self.cfg.input != "noise":
            return embeddings
        if noise is None:
            raise ValueError("hnet.input=noise needs a noise vector per client")
        return torch.cat([embeddings, noise], dim=1)

    def generate(self, condition: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weights for each row of ``condition`` [B, cond_dim]: name -> [B, *shape]."""
        flat = self.output(self.body(condition))  # [B, P]
        parts = flat.split(self.sizes, dim=1)
        batch = condition.shape[0]
        return {name: p.view(batch, *shape) for (name, shape), p in zip(self.target_shapes.items(), parts, strict=True)}

    def forward(self, client_ids: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Weights of the clients ``client_ids`` [B]: name -> [B, *shape]."""
        return self.generate(self.condition(client_ids, noise))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Φ: every parameter but the client embeddings."""
        return [p for name, p in self.named_parameters() if not name.startswith("embeddings.")]

    def embedding_parameters(self) -> list[nn.Parameter]:
        return [] if self.embeddings is None else list(self.embeddings.parameters())

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts: Φ, the embedding table, and one target model."""
        return {
            "hnet_shared": sum(p.numel() for p in self.shared_parameters()),
            "hnet_embeddings": sum(p.numel() for p in self.embedding_parameters()),
            "target": sum(self.sizes),
        }
