"""The hypernetwork's configuration and its choices: one registry per part.

Chauhan et al. ("A Brief Review of Hypernetworks in Deep Learning") sort hypernetworks by what
they take as input, what they output and their architecture. Each criterion is one part of
``fedhyper.hypernet.HyperNetwork`` and one registry here, which ``HyperNetConfig`` names a
choice of:

- ``INPUTS`` (``hnet.input``): conditioners, client ids [+ a per-call input] -> the condition
  (``fedhyper.hnet.conditioners``);
- ``BODIES`` (``hnet.body``): condition -> one feature vector per output slot
  (``fedhyper.hnet.bodies``);
- ``OUTPUTS`` (``hnet.output``): features -> every target weight (``fedhyper.hnet.outputs``);
- ``INITS`` (``hnet.init``): ``Init`` classes that re-initialise the built parts (``fedhyper.hnet.inits``).

A part module registers a class (an init, a function) with one decorator line,
``@BODIES.register("mlp")``; importing ``fedhyper.hnet`` imports every part module, so each
registry is full whichever module is imported first. This module imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class Registry:
    """The named choices of one part of the hypernetwork (``hnet.<key>``); a name is registered once."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        """A decorator that registers its class (or function) as ``hnet.<key>=<name>``."""

        def add(entry: Any) -> Any:
            if name in self._entries:
                raise ValueError(
                    f"hnet.{self.key}={name!r} is registered twice ({self._entries[name].__name__} and "
                    f"{entry.__name__}); register the new one under another name"
                )
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str, prefix: str = "hnet") -> Any:
        """The entry registered as ``name``; a ValueError that lists the choices if there is none."""
        if name not in self._entries:
            raise ValueError(f"{prefix}.{self.key}={name!r} is unknown; choose one of {', '.join(self._entries)}")
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


INPUTS = Registry("input")
BODIES = Registry("body")
OUTPUTS = Registry("output")
INITS = Registry("init")


@dataclass
class HyperNetConfig:
    """The hypernetwork: pFedHN's by default (embedding input, MLP body, a head per tensor)."""

    input: str = "embedding"  # embedding | data | noise (registered in INPUTS)
    output: str = "per_tensor"  # per_tensor | chunked | component (registered in OUTPUTS)
    body: str = "mlp"  # mlp | attention (registered in BODIES)
    init: str = "default"  # default | hyperfan_in | hyperfan_out | base (registered in INITS)
    embedding_dim: int | None = None  # None: 1 + num_clients / 4, as in pFedHN (also the descriptor size)
    # pFedHN's rule gives 2,501 dimensions to 10,000 clients, so the embedding table (N x d) would
    # grow with N squared; the cap keeps it linear in N. It leaves federations up to 252 clients as
    # pFedHN sized them. None removes it.
    max_embedding_dim: int | None = 64
    hidden_dim: int = 100  # width of the body's layers: the features each output slot reads
    n_hidden: int = 3  # hidden layers of the MLP body
    chunk_size: int = 4096  # output=chunked: weights generated per chunk
    chunk_emb_dim: int = 8  # output=chunked with body=mlp: size of each chunk's learned embedding
    component_emb_dim: int = 8  # output=component with body=mlp: size of each target tensor's learned embedding
    attention_layers: int = 2  # body=attention: transformer layers
    attention_heads: int = 4  # body=attention: must divide hidden_dim
    noise_dim: int = 8  # input=noise: size of the noise vector appended to the embedding
    noise_samples: int = 8  # input=noise: models sampled per client at evaluation (the ensemble)
    spectral_norm: bool = False  # spectral normalisation of every linear layer of body and output
    # A shared base θ_0 [P], zeros at the start (hnet.init=base draws it as the target's layers),
    # added to every client's generated weights: θ_i = θ_0 + h(v_i; Φ). Its own outer step
    # (strategy.outer.base_lr) moves it by the round's weighted mean Δ, FedAvg's server step, so
    # that h only has to learn how clients differ from it.
    base: bool = False

    def resolved_embedding_dim(self, num_clients: int) -> int:
        dim = self.embedding_dim or int(1 + num_clients / 4)
        return min(dim, self.max_embedding_dim) if self.max_embedding_dim else dim

    def validate(self, prefix: str = "hnet") -> None:
        """Raise ValueError naming the first choice or size that cannot be built."""
        for registry, name in ((INPUTS, self.input), (BODIES, self.body), (OUTPUTS, self.output), (INITS, self.init)):
            registry.get(name, prefix).check(self, prefix)  # each part checks the options it reads
        sizes = (self.hidden_dim, self.chunk_size, self.chunk_emb_dim, self.component_emb_dim)
        if min(*sizes, self.noise_dim, self.noise_samples) < 1 or self.n_hidden < 0:
            raise ValueError(
                f"{prefix}: hidden_dim, chunk_size, chunk_emb_dim, component_emb_dim, noise_dim and "
                f"noise_samples must be >= 1, n_hidden >= 0"
            )
