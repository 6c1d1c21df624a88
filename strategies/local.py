"""Local training: every client trains its own model on its own data and never communicates.

The lower bound every personalised method must beat on clients with enough data, and the
reference that shows what federation adds on clients with little (e.g. Shamsian et al.,
pFedHN, ICML 2021, Table 1 "Local").

The server only schedules: it sends each sampled client an order to train (no tensors)
and asks every client for its accuracy; the models never leave the clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from strategies.directory import ClientDirectory
from strategies.shared import SharedModelConfig, SharedModelStrategy, shared_weights


@dataclass
class LocalConfig(SharedModelConfig):
    name: str = "local"


class Local(SharedModelStrategy):
    """Shares nothing: each client's whole model is its private part."""


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> Local:
    return Local(cfg, directory, shared_weights(cfg, "none"))


register_server(LocalConfig, build)
