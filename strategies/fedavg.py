"""FedAvg: one global model, the example-weighted mean of the clients' locally trained copies.

McMahan, Moore, Ramage, Hampson, Agüera y Arcas. "Communication-Efficient Learning of Deep
Networks from Decentralized Data". AISTATS 2017. https://arxiv.org/abs/1602.05629

Every client is evaluated with the global model on its own test split.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from strategies.directory import ClientDirectory
from strategies.shared import SharedModelConfig, SharedModelStrategy, shared_weights


@dataclass
class FedAvgConfig(SharedModelConfig):
    name: str = "fedavg"


class FedAvg(SharedModelStrategy):
    """The whole model is shared; clients keep nothing."""


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> FedAvg:
    return FedAvg(cfg, directory, shared_weights(cfg, "all"))


register_server(FedAvgConfig, build)
