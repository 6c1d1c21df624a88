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

from fedhyper import privacy, protocol, record
from fedhyper.algorithms import ALGORITHMS, register_server
from fedhyper.config import ExperimentConfig
from fedhyper.data import dataset_info
from fedhyper.device import select_device
from fedhyper.hypernet import HyperNetwork
from fedhyper.models import build_model, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig
from fedhyper.search import LOCAL_LR_SPACE, Choice, EvalSpace, Range, SearchSpace
from fedhyper.training import LocalTrainConfig
from fedhyper.widths import ClientWidths
from strategies.base import PersonalizedStrategy, RoundPlan, stacked_replies
from strategies.directory import ClientDirectory
from strategies.evaluation import train_summary
from strategies.exchange import Exchange
from strategies.replies import Reply


@dataclass
class PFedHNConfig:
    """pFedHN's defaults: 3 hidden layers of 100, outer SGD 1e-2, 50 inner steps of SGD 5e-3."""

    name: str = "pfedhn"
    search_space: ClassVar[SearchSpace] = {
        **LOCAL_LR_SPACE,
        "strategy.outer.lr": Range(1e-3, 1e-1, log=True),
        "hnet.embedding_dim": Choice((8, 16, 32, 64)),
    }
    eval_space: ClassVar[EvalSpace] = {}  # options acting only at evaluation (settle=true); none
    varied_widths: ClassVar[bool] = True  # model.width_multipliers: each client gets its width's slice
    private_training: ClassVar[bool] = True  # privacy.*: each client's part of Φ's gradient clipped, the sum noised
    outer: OuterConfig = field(default_factory=OuterConfig)
    local: LocalTrainConfig = field(default_factory=LocalTrainConfig)

    def validate(self) -> None:
        self.outer.validate()
        self.local.validate()


@dataclass
class HyperRoundPlan(RoundPlan):
    """A pFedHN round: what was sent, and the noise each trainer's weights were generated with (input=noise)."""

    noise: dict[int, torch.Tensor] = field(default_factory=dict)


class PFedHN(PersonalizedStrategy):
    """The hypernetwork lives here; clients only ever see their own generated weights."""

    adapts_novel_clients = True  # novel clients' embeddings are fitted with Φ frozen (pFedHN, section 5.3)

    def __init__(self, cfg: ExperimentConfig, directory: ClientDirectory, trainer: HyperNetTrainer) -> None:
        super().__init__(cfg, directory)
        self.trainer = trainer
        self.widths = ClientWidths(cfg.model, *dataset_info(cfg.data.name), trainer.hnet.target_shapes)

    def _generate(self, client_ids: list[int], noise: torch.Tensor | None = None) -> dict[int, dict]:
        """Each client's generated weights, cut to its width (``fedhyper.widths``)."""
        return self.widths.split(client_ids, self.trainer.generate(client_ids, noise))

    def configure_train(self, server_round: int, client_ids: list[int], calls: Exchange) -> HyperRoundPlan:
        noise = self.trainer.sample_noise(len(client_ids))  # input=noise: one draw per client, kept for the step
        sent = {cid: protocol.weights_to_record(w) for cid, w in self._generate(client_ids, noise).items()}
        return HyperRoundPlan(sent, {} if noise is None else dict(zip(client_ids, noise, strict=True)))

    def configure_evaluate(self, server_round: int, client_ids: list[int], calls: Exchange) -> dict[int, ArrayRecord]:
        """Each client's model; with input=noise, an ensemble of ``hnet.noise_samples`` models each."""
        if self.trainer.hnet.cfg.input != "noise":
            return {cid: protocol.weights_to_record(w) for cid, w in self._generate(client_ids).items()}
        ensemble = self.trainer.generate_ensemble(client_ids, self.trainer.hnet.cfg.noise_samples)
        members = [self.widths.split(client_ids, {n: w[k] for n, w in ensemble.items()})
                   for k in range(self.trainer.hnet.cfg.noise_samples)]  # fmt: skip
        return {cid: protocol.weights_to_record(protocol.pack_members([m[cid] for m in members])) for cid in client_ids}

    def trained_weights(
        self, replies: dict[int, Reply], extra: torch.Tensor | None = None
    ) -> tuple[list[int], dict[str, torch.Tensor]]:
        """The replies' client ids in order and their trained weights batched, full width: name -> [B, *shape].

        Narrow replies sit inside what the hypernetwork generates again: Δ_i = 0 outside a client's slice.
        """
        ids = sorted(replies)
        if not self.widths.varied:
            return ids, stacked_replies(replies, ids)
        generated = self.trainer.generate(ids, extra)
        return ids, self.widths.join(ids, {c: replies[c].weights for c in ids}, generated)

    def aggregate_train(
        self, server_round: int, plan: HyperRoundPlan, replies: dict[int, Reply], calls: Exchange
    ) -> dict[str, float]:
        """One outer step of Φ and the embeddings from the round's trained weights.

        After training (novel clients' rounds) only the novel clients' embeddings move.
        """
        noise = torch.stack([plan.noise[c] for c in sorted(replies)]) if plan.noise else None
        ids, trained = self.trained_weights(replies, noise)
        counts = [replies[c].num_examples for c in ids]
        if server_round > self.num_rounds:
            self.trainer.fit_embeddings(ids, trained, counts, noise)
            return train_summary(replies)
        grad_norm = self.trainer.step(ids, trained, counts, noise, server_round)
        return {**train_summary(replies), record.GRAD_NORM: grad_norm}

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
        table = self.trainer.hnet.conditioner.table.weight.detach().cpu()
        return {cid: table[cid] for cid in self.directory.client_ids}

    def state_dict(self) -> dict[str, Any]:
        return {"trainer": self.trainer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state["trainer"])


def build_trainer(cfg: ExperimentConfig, exclude: tuple[str, ...] = ()) -> HyperNetTrainer:
    """The hypernetwork for the target's tensors except ``exclude``, with its optimiser, on its device."""
    input_shape, n_classes = dataset_info(cfg.data.name)
    target = build_model(cfg.model, input_shape, n_classes)
    shapes = {n: s for n, s in target_shapes(target).items() if n not in exclude}
    torch.manual_seed(cfg.seed)
    hnet = HyperNetwork(shapes, cfg.data.num_clients, cfg.hnet)
    mech = privacy.mechanism(cfg)  # None unless privacy.* is set
    clipping = None if mech is None else privacy.ClientClipping(mech)
    device = select_device(cfg.device)
    return HyperNetTrainer(hnet.to(device), cfg.strategy.outer, cfg.seed, clipping, num_rounds=cfg.sim.num_rounds)


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> PFedHN:
    """A pFedHN strategy for ``cfg``, its hypernetwork on the configured device.

    With ``hnet.input=data`` the hypernetwork reads descriptors of the clients' data: that is PeFLL,
    found through the registry (``strategies.pefll`` builds on this module, not the other way).
    """
    if cfg.hnet.input == "data":
        return ALGORITHMS.server("pefll").build(cfg, directory)
    return PFedHN(cfg, directory, build_trainer(cfg))


register_server(PFedHNConfig, build)
