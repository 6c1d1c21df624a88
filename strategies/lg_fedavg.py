"""LG-FedAvg: local representations, a global head; the head is federated, each client keeps
its body (the layers that read its own data) to itself.

Liang, Liu, Ziyin, Allen, Auerbach, Brent, Salakhutdinov, Morency. "Think Locally, Act
Globally: Federated Learning with Local and Global Representations". 2020.
https://arxiv.org/abs/2001.01523
"""

from __future__ import annotations

from dataclasses import dataclass

from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from strategies.directory import ClientDirectory
from strategies.shared import SharedModelConfig, SharedModelStrategy, shared_weights


@dataclass
class LGFedAvgConfig(SharedModelConfig):
    name: str = "lg_fedavg"


class LGFedAvg(SharedModelStrategy):
    """Shares the head (the last linear layer); the body stays on each client."""


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> LGFedAvg:
    return LGFedAvg(cfg, directory, shared_weights(cfg, "head"))


register_server(LGFedAvgConfig, build)
