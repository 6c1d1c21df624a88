"""Ditto: FedAvg trains a global model; each client also trains a personal model regularised
towards it, (lambda / 2) ||v − w_global||², which stays on the client and is evaluated.

Li, Hu, Beirami, Smith. "Ditto: Fair and Robust Federated Learning Through
Personalization". ICML 2021. https://arxiv.org/abs/2012.04221
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from fedhyper import protocol
from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from fedhyper.search import LOCAL_LR_SPACE, Range, SearchSpace
from fedhyper.training import LocalTrainConfig
from strategies.directory import ClientDirectory
from strategies.shared import SharedModelConfig, SharedModelStrategy, shared_weights


@dataclass
class DittoConfig(SharedModelConfig):
    name: str = "ditto"
    search_space: ClassVar[SearchSpace] = {**LOCAL_LR_SPACE, "strategy.lam": Range(1e-2, 2.0, log=True)}
    local: LocalTrainConfig = field(default_factory=LocalTrainConfig)  # the global model's steps
    lam: float = 0.1  # the paper picks lambda from {0.05, 0.1, 0.2, 0.5, 1, 2} per dataset
    personal_steps: int = 50  # steps on the personal model per round

    def validate(self) -> None:
        super().validate()
        if self.lam < 0 or self.personal_steps < 1:
            raise ValueError(f"strategy.lam={self.lam} must be >= 0 and strategy.personal_steps >= 1")


class Ditto(SharedModelStrategy):
    """FedAvg's server; personal models never reach it."""


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> Ditto:
    settings = {protocol.PROX_MU: cfg.strategy.lam, protocol.PERSONAL_STEPS: cfg.strategy.personal_steps}
    return Ditto(cfg, directory, shared_weights(cfg, "all"), settings)


register_server(DittoConfig, build)
