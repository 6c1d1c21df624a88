"""FedRep: a shared representation (body) learned by FedAvg; each client first fits its own
head with the body frozen, then updates the body with its head frozen.

Collins, Hassani, Mokhtari, Shakkottai. "Exploiting Shared Representations for Personalized
Federated Learning". ICML 2021. https://arxiv.org/abs/2102.07078
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
class FedRepConfig(SharedModelConfig):
    name: str = "fedrep"
    search_space: ClassVar[SearchSpace] = {
        **LOCAL_LR_SPACE,
        "strategy.head_steps": Range(5, 100, log=True, integer=True),
    }
    local: LocalTrainConfig = field(default_factory=LocalTrainConfig)  # the body's steps
    # The paper runs 10 head epochs per body epoch; at fedhyper's step-based budget that is
    # 10 x local.steps. The default keeps FedRep's compute per round near the other methods'.
    head_steps: int = 50

    def validate(self) -> None:
        super().validate()
        if self.head_steps < 0:
            raise ValueError(f"strategy.head_steps={self.head_steps} must be >= 0")


class FedRep(SharedModelStrategy):
    """Shares the body; the client routine alternates head and body."""


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> FedRep:
    settings = {protocol.HEAD_STEPS: cfg.strategy.head_steps}
    return FedRep(cfg, directory, shared_weights(cfg, "body"), settings)


register_server(FedRepConfig, build)
