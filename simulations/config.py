"""Hydra's ConfigStore: the library's dataclasses, one per config group, registered once."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

import strategies
from fedhyper.config import ExperimentConfig
from fedhyper.data import DataConfig
from fedhyper.models import ModelConfig


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=ExperimentConfig)
    for entry in strategies.REGISTRY.values():
        cs.store(group="strategy", name=entry.name, node=entry.config_cls)
    cs.store(group="data", name="fmnist", node=DataConfig(name="fmnist"))
    cs.store(group="model", name="cnn", node=ModelConfig(name="cnn"))
    cs.store(group="model", name="mlp", node=ModelConfig(name="mlp"))
