"""FedProx: FedAvg whose clients add a proximal term (mu / 2) ||w − w_global||² to their loss.

Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith. "Federated Optimization in Heterogeneous
Networks". MLSys 2020. https://arxiv.org/abs/1812.06127 (Flower's ``FedProx`` sends mu the
same way, as one config key.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fedhyper import protocol
from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from fedhyper.search import LOCAL_LR_SPACE, Range, SearchSpace
from strategies.directory import ClientDirectory
from strategies.shared import SharedModelConfig, SharedModelStrategy, shared_weights


@dataclass
class FedProxConfig(SharedModelConfig):
    name: str = "fedprox"
    search_space: ClassVar[SearchSpace] = {**LOCAL_LR_SPACE, "strategy.mu": Range(1e-3, 1.0, log=True)}
    mu: float = 0.01  # the paper tunes mu over {0.001, 0.01, 0.1, 1}

    def validate(self) -> None:
        super().validate()
        if self.mu < 0:
            raise ValueError(f"strategy.mu={self.mu} must be >= 0")


class FedProx(SharedModelStrategy):
    """FedAvg's server; the clients' loss carries the proximal term."""


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> FedProx:
    settings = {protocol.PROX_MU: cfg.strategy.mu}
    return FedProx(cfg, directory, shared_weights(cfg, "all"), settings)


register_server(FedProxConfig, build)
