"""pFedLA: layer-wise personalised aggregation, learned by a hypernetwork per client.

Ma, Zhang, Guo, Xu. "Layer-wised Model Aggregation for Personalized Federated Learning".
CVPR 2022. https://arxiv.org/abs/2205.03993

The server stores every client's latest model θ_j. Client i's hypernetwork gives, for each
layer, weights α_i over all clients (``fedhyper.layerwise``); the client receives and trains
θ̄_i = Σ_j α_ij θ_j layer by layer and returns θ_i. The server stores θ_i and steps client
i's hypernetwork along (∂θ̄_i/∂φ_i)ᵀ(θ_i − θ̄_i), as pFedHN steps its hypernetwork.

Server memory grows with N models and N hypernetworks of O(N) outputs: meant for tens to a
few hundred clients, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from flwr.app import ArrayRecord

from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from fedhyper.data import dataset_info
from fedhyper.layerwise import LayerwiseHyperNets, layer_index, personalise
from fedhyper.models import initial_weights
from fedhyper.search import LOCAL_LR_SPACE, EvalSpace, Range, SearchSpace
from fedhyper.training import LocalTrainConfig
from strategies.base import PersonalizedStrategy, RoundPlan, per_client_records, stacked_replies
from strategies.directory import ClientDirectory
from strategies.evaluation import train_summary
from strategies.exchange import Exchange
from strategies.replies import Reply


@dataclass
class PFedLAConfig:
    name: str = "pfedla"
    search_space: ClassVar[SearchSpace] = {**LOCAL_LR_SPACE, "strategy.hn_lr": Range(1e-3, 5e-2, log=True)}
    eval_space: ClassVar[EvalSpace] = {}  # options acting only at evaluation (settle=true); none
    local: LocalTrainConfig = field(default_factory=LocalTrainConfig)
    embedding_dim: int = 100  # size of each client's embedding fed to its layer-weighting hypernetwork
    hidden_dim: int = 100  # width of each client's hypernetwork
    hn_lr: float = 5e-3  # plain SGD on the hypernetworks, as in the paper's code
    hn_momentum: float = 0.0  # SGD momentum of the hypernetworks

    def validate(self) -> None:
        self.local.validate()
        if self.hn_lr <= 0 or self.embedding_dim < 1 or self.hidden_dim < 1:
            raise ValueError("strategy.hn_lr must be positive and strategy.embedding_dim, hidden_dim >= 1")


class PFedLA(PersonalizedStrategy):
    """Every client's stored model, and a hypernetwork per client that mixes them layer by layer."""

    def __init__(self, cfg: ExperimentConfig, directory: ClientDirectory, models: dict[str, torch.Tensor]) -> None:
        super().__init__(cfg, directory)
        s = cfg.strategy
        self.models = models  # name -> [N, *shape]: each client's latest trained model
        self.layer_of = layer_index(list(models))
        n_layers = max(self.layer_of.values()) + 1
        self.hnets = LayerwiseHyperNets(cfg.data.num_clients, n_layers, s.embedding_dim, s.hidden_dim)
        self.optimizer = torch.optim.SGD(self.hnets.parameters(), lr=s.hn_lr, momentum=s.hn_momentum)

    def _personalised(self, client_ids: list[int]) -> dict[str, torch.Tensor]:
        return personalise(self.hnets(torch.as_tensor(client_ids)), self.models, self.layer_of)

    def configure_evaluate(self, server_round: int, client_ids: list[int], calls: Exchange) -> dict[int, ArrayRecord]:
        with torch.no_grad():
            return per_client_records(client_ids, self._personalised(client_ids))

    def configure_train(self, server_round: int, client_ids: list[int], calls: Exchange) -> RoundPlan:
        return RoundPlan(self.configure_evaluate(server_round, client_ids, calls))

    def aggregate_train(
        self, server_round: int, plan: RoundPlan, replies: dict[int, Reply], calls: Exchange
    ) -> dict[str, float]:
        ids = sorted(replies)
        trained = stacked_replies(replies, ids)
        mixed = self._personalised(ids)  # with the graph back to the hypernetworks
        deltas = [-(trained[n] - mixed[n].detach()) for n in mixed]  # -Δ: a step against it moves θ̄_i to θ_i
        params = list(self.hnets.parameters())
        grads = torch.autograd.grad(list(mixed.values()), params, grad_outputs=deltas, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        index = torch.as_tensor(ids)
        for name in self.models:
            self.models[name][index] = trained[name]
        with torch.no_grad():
            own = self.hnets(index)[torch.arange(len(ids)), :, index].mean()
        # self_weight: the mean weight a client gives its own model, over layers
        return {**train_summary(replies), "self_weight": float(own)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "hnets": self.hnets.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.models = dict(state["models"])
        self.hnets.load_state_dict(state["hnets"])
        self.optimizer.load_state_dict(state["optimizer"])


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> PFedLA:
    input_shape, n_classes = dataset_info(cfg.data.name)
    init = initial_weights(cfg.model, input_shape, n_classes, cfg.seed)
    models = {n: w.unsqueeze(0).repeat(cfg.data.num_clients, *([1] * w.dim())) for n, w in init.items()}
    torch.manual_seed(cfg.seed)
    return PFedLA(cfg, directory, models)


register_server(PFedLAConfig, build)
