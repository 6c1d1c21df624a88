"""Hydra's ConfigStore: the library's dataclasses, one per config group, registered once."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

import strategies
from fedhyper.config import ExperimentConfig
from fedhyper.data import DataConfig
from fedhyper.models import ModelConfig

# Named data settings for simulations.compare: overrides applied before the command line's.
DATA_SETTINGS: dict[str, list[str]] = {
    "default": [],  # the experiment's defaults and the command line, nothing more
    "pfedhn": ["data.partition=pathological", "data.classes_per_client=2", "data.num_clients=50"],
    "dirichlet": ["data.partition=dirichlet", "data.alpha=0.3", "data.num_clients=100"],
}
ENGINES = ("inprocess", "flower")


@dataclass
class CompareConfig(ExperimentConfig):
    """A grid of runs (``python -m simulations.compare``): strategies × data settings × seeds.

    The experiment's own keys (``data.*``, ``sim.*``, ``model.*``, ``strategy.*``...) given on
    the command line apply to every run of the grid.
    """

    strategies: list[str] = field(default_factory=lambda: ["pfedhn"])
    seeds: list[int] = field(default_factory=lambda: [0])
    settings: list[str] = field(default_factory=lambda: ["default"])  # names in setting_overrides
    # name -> overrides; add one with '+setting_overrides.mine=["data.alpha=0.1"]'.
    setting_overrides: dict[str, list[str]] = field(default_factory=lambda: dict(DATA_SETTINGS))
    # strategy -> overrides for its runs only, e.g. '+strategy_overrides.pfedhn=["hnet.hidden_dim=50"]'.
    strategy_overrides: dict[str, list[str]] = field(default_factory=dict)
    # inprocess: the real ServerApp and ClientApp in one process per run, no SuperLink or Ray (fast, parallel);
    # flower: each run through python -m simulations.run (a private SuperLink and Ray, one run at a time).
    engine: str = "inprocess"
    jobs: int = 0  # runs at once with engine=inprocess; 0: one per CPU core
    out_dir: str = "outputs/compare"  # repeating a command with the same out_dir skips finished runs
    target_accuracy: float = 0.9  # the report's "rounds to target"
    progress_every: float = 30.0  # seconds between progress lines


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=ExperimentConfig)
    cs.store(name="base_compare", node=CompareConfig)
    for entry in strategies.REGISTRY.values():
        cs.store(group="strategy", name=entry.name, node=entry.config_cls)
    cs.store(group="data", name="fmnist", node=DataConfig(name="fmnist"))
    cs.store(group="model", name="cnn", node=ModelConfig(name="cnn"))
    cs.store(group="model", name="mlp", node=ModelConfig(name="mlp"))
