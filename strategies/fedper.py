"""FedPer: the body is federated (FedAvg), each client's classifier head stays on the client.

Arivazhagan, Aggarwal, Singh, Choudhary. "Federated Learning with Personalization Layers".
2019. https://arxiv.org/abs/1912.00818
"""

from __future__ import annotations

from dataclasses import dataclass

from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from strategies.directory import ClientDirectory
from strategies.shared import SharedModelConfig, SharedModelStrategy, shared_weights


@dataclass
class FedPerConfig(SharedModelConfig):
    name: str = "fedper"


class FedPer(SharedModelStrategy):
    """Shares the body (every layer but the last linear one); clients train body and head jointly."""


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> FedPer:
    return FedPer(cfg, directory, shared_weights(cfg, "body"))


register_server(FedPerConfig, build)
