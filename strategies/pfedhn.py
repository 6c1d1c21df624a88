"""pFedHN: a server-side hypernetwork generates every client's personalised model.

Shamsian, Navon, Fetaya, Chechik. "Personalized Federated Learning using Hypernetworks".
ICML 2021. https://arxiv.org/abs/2103.04628

Each round the hypernetwork h(·; Φ) turns the sampled clients' embeddings v_i into their
weights θ̃_i in one batched forward; each client trains θ̃_i locally and returns θ_i; the
server steps Φ and v_i along the vector-Jacobian product of Δ_i = θ_i − θ̃_i, for all the
round's clients in one backward pass (``fedhyper.hypergrad``). The reference code updates
after every single client; ``clients_per_round=1`` reproduces that exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from flwr.app import ArrayRecord

from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from fedhyper.data import dataset_info
from fedhyper.device import select_device
from fedhyper.hypernet import HyperNetwork
from fedhyper.models import build_model, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig
from fedhyper.search import LOCAL_LR, Choice, Range, SearchSpace
from fedhyper.training import LocalTrainConfig
from fedhyper.widths import ClientWidths
from strategies.base import PersonalizedStrategy, stacked_replies, train_summary
from strategies.directory import ClientDirectory
from strategies.replies import Reply


@dataclass
class PFedHNConfig:
    """pFedHN's defaults: 3 hidden layers of 100, outer SGD 1e-2, 50 inner steps of SGD 5e-3."""

    name: str = "pfedhn"
    search_space: ClassVar[SearchSpace] = {
        **LOCAL_LR,
        "strategy.outer.lr": Range(1e-3, 1e-1, log=True),
        "hnet.embedding_dim": Choice((8, 16, 32, 64)),
    }
    varied_widths: ClassVar[bool] = True  # model.width_multipliers: each client gets its width's slice
    outer: OuterConfig = field(default_factory=OuterConfig)
    local: LocalTrainConfig = field(default_factory=LocalTrainConfig)

    def validate(self) -> None:
        self.outer.validate()
        self.local.validate()


class PFedHN(PersonalizedStrategy):
    """The hypernetwork lives here; clients only ever see their own generated weights."""

    def __init__(self, cfg: ExperimentConfig, directory: ClientDirectory, trainer: HyperNetTrainer) -> None:
        super().__init__(cfg, directory)
        self.trainer = trainer
        self._noise: dict[int, torch.Tensor] = {}  # input=noise: each trainer's draw this round
        self.widths = ClientWidths(cfg.model, *dataset_info(cfg.data.name), trainer.hnet.target_shapes)

    adapts_novel_clients = True  # novel clients' embeddings are fitted with Φ frozen (pFedHN, section 5.3)

    def _generate(self, client_ids: list[int], noise: torch.Tensor | None = None) -> dict[int, dict]:
        """Each client's generated weights, cut to its width (``fedhyper.widths``)."""
        return self.widths.split(client_ids, self.trainer.generate(client_ids, noise))

    def train_payloads(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        noise = self.trainer.sample_noise(len(client_ids))  # input=noise: one draw per client, kept for the step
        self._noise = {} if noise is None else dict(zip(client_ids, noise, strict=True))
        return {cid: protocol.weights_to_record(w) for cid, w in self._generate(client_ids, noise).items()}

    def eval_payloads(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        """Each client's model; with input=noise, an ensemble of ``hnet.noise_samples`` models each."""
        if self.trainer.hnet.cfg.input != "noise":
            return {cid: protocol.weights_to_record(w) for cid, w in self._generate(client_ids).items()}
        ensemble = self.trainer.generate_ensemble(client_ids, self.trainer.hnet.cfg.noise_samples)
        members = [self.widths.split(client_ids, {n: w[k] for n, w in ensemble.items()})
                   for k in range(self.trainer.hnet.cfg.noise_samples)]  # fmt: skip
        return {cid: protocol.weights_to_record(protocol.pack_members([m[cid] for m in members])) for cid in client_ids}

    def apply_train(self, server_round: int, replies: dict[int, Reply]) -> dict[str, float]:
        """One outer step of Φ and the embeddings from the round's trained weights.

        After training (novel clients' rounds) only the novel clients' embeddings move.
        """
        ids = sorted(replies)
        noise = torch.stack([self._noise[c] for c in ids]) if self._noise else None
        if self.widths.varied:  # narrow replies inside what the step generates again: Δ_i = 0 outside a slice
            generated = self.trainer.generate(ids, noise)
            trained = self.widths.join(ids, {c: replies[c].weights for c in ids}, generated)
        else:
            trained = stacked_replies(replies, ids)
        counts = [replies[c].num_examples for c in ids]
        if self.in_novel_phase(server_round):
            self.trainer.fit_embeddings(ids, trained, counts, noise)
            return train_summary(replies)
        grad_norm = self.trainer.step(ids, trained, counts, noise)
        return {**train_summary(replies), "grad_norm": grad_norm}

    def summary_extras(self) -> dict[str, Any]:
        counts = self.trainer.hnet.num_parameters()
        return {
            "hnet_parameters": counts["hnet_shared"] + counts["hnet_embeddings"],
            "hnet_shared_parameters": counts["hnet_shared"],
            "target_parameters": counts["target"],
            "hnet_target_ratio": round(counts["hnet_shared"] / counts["target"], 2),
        }

    def client_vectors(self) -> dict[int, torch.Tensor] | None:
        """What the hypernetwork knows each client by, for plots: its row of the embedding table."""
        table = self.trainer.hnet.embeddings.weight.detach().cpu()
        return {cid: table[cid] for cid in self.directory.client_ids}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "trainer": self.trainer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.trainer.load_state_dict(state["trainer"])


def build_trainer(cfg: ExperimentConfig, exclude: tuple[str, ...] = ()) -> HyperNetTrainer:
    """The hypernetwork for the target's tensors except ``exclude``, with its optimiser, on its device."""
    input_shape, n_classes = dataset_info(cfg.data.name)
    target = build_model(cfg.model, input_shape, n_classes)
    shapes = {n: s for n, s in target_shapes(target).items() if n not in exclude}
    torch.manual_seed(cfg.seed)
    hnet = HyperNetwork(shapes, cfg.data.num_clients, cfg.hnet)
    return HyperNetTrainer(hnet.to(select_device(cfg.device)), cfg.strategy.outer, seed=cfg.seed)


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> PFedHN:
    """A pFedHN strategy for ``cfg``, its hypernetwork on the configured device (PeFLL for hnet.input=data)."""
    if cfg.hnet.input == "data":
        from strategies import pefll  # it subclasses PFedHN: imported here, not at the top

        return pefll.build(cfg, directory)
    return PFedHN(cfg, directory, build_trainer(cfg))
