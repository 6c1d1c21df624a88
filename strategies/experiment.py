"""The ServerApp's view of its configuration: typed, validated, with a place to write.

A launcher (``python -m simulations.run``) resolves the Hydra config, writes it as
``config.yaml`` into the run directory and passes both paths in the run config. A bare
``flwr run .`` passes neither: the dataclass defaults apply, with ``overrides`` (a
space-separated ``key=value`` list) on top, and the federation's size sets the number of
clients unless ``data.num_clients`` is among the overrides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fedhyper.config import ExperimentConfig
from fedhyper.hypernet import HyperNetConfig
from strategies import registry

# Keys of the Flower run config ([tool.flwr.app.config] in pyproject.toml).
RUN_CONFIG_FILE = "config-file"
RUN_DIR = "run-dir"
RUN_OVERRIDES = "overrides"
RUN_RESUME = "resume"
DEFAULT_STRATEGY = "pfedhn"

# Options whose default is not what runs did before the option existed: a config.yaml recorded
# without one ran with the value here, not with today's default.
VALUES_BEFORE_OPTION: dict[str, Any] = {
    "strategy.outer.weighting": "examples",  # added with that default; "uniform" since issue 12's fidelity check
    "strategy.outer.schedule": "constant",  # what every run had before the option; FedHyper's default is cosine
    "strategy.base": False,  # FedHyper's runs before its shared base (hnet.base) had none
    "strategy.local.lr_schedule": "constant",  # every strategy's local lr before the option
    "strategy.embedding_dim": None,  # FedHyper's runs before the option had hnet's size (pFedHN's rule)
    "strategy.local.max_grad_norm": 0.0,  # every strategy's local steps before the option were unclipped
    "strategy.shared_model": False,  # FedHyper's runs before the option had the generated model alone
    "strategy.shared_adapt_steps": None,  # FedHyper's shared model was adapted as its generated one (adapt_steps)
    "strategy.shared_adapt_lr": None,  # ... at local.lr
    "strategy.clients_per_step": 0,  # FedHyper's runs before the option stepped once a round
}

_ABSENT = object()


@dataclass
class Experiment:
    cfg: ExperimentConfig
    run_dir: Path
    fixed_num_clients: bool  # False: adopt the number of nodes the federation has
    resume: bool = False  # continue from run_dir's checkpoint


def schema(raw: Any) -> DictConfig:
    """The structured config, at its defaults, of the strategy ``raw`` names (``strategy.name``)."""
    name = OmegaConf.select(raw, "strategy.name", default=DEFAULT_STRATEGY)
    return OmegaConf.structured(ExperimentConfig(strategy=registry.get(name).config_cls()))


def typed(raw: Any) -> ExperimentConfig:
    """Merge a loaded config onto the schema of its strategy and return dataclasses."""
    cfg: ExperimentConfig = OmegaConf.to_object(OmegaConf.merge(schema(raw), raw))  # type: ignore[assignment]
    return with_hnet_input(cfg)


def recorded(config_file: Path) -> DictConfig:
    """A run's ``config.yaml``, with ``VALUES_BEFORE_OPTION`` filled in where it predates them."""
    raw = OmegaConf.load(config_file)
    assert isinstance(raw, DictConfig), f"{config_file} holds no mapping"
    defaults = schema(raw)
    for key, value in VALUES_BEFORE_OPTION.items():
        section, _, option = key.rpartition(".")
        node = OmegaConf.select(raw, section)
        has_option = OmegaConf.select(defaults, key, default=_ABSENT) is not _ABSENT  # not every strategy has it
        if isinstance(node, DictConfig) and option not in node and has_option:
            node[option] = value
    return raw


def with_hnet_input(cfg: ExperimentConfig) -> ExperimentConfig:
    """A strategy whose hypernetwork reads one input (PeFLL: ``hnet_input = "data"``) sets it.

    The default input is replaced; another one given explicitly is a ValueError.
    """
    required = getattr(cfg.strategy, "hnet_input", None)
    if required is None or cfg.hnet.input == required:
        return cfg
    if cfg.hnet.input != HyperNetConfig().input:
        raise ValueError(f"strategy={cfg.strategy.name} needs hnet.input={required}; drop hnet.input={cfg.hnet.input}")
    cfg.hnet.input = required
    return cfg


def load(run_config: dict[str, Any]) -> Experiment:
    """Build the experiment from the run config of a ``flwr run``."""
    config_file = str(run_config.get(RUN_CONFIG_FILE, ""))
    run_dir = str(run_config.get(RUN_DIR, ""))
    if config_file:
        cfg = typed(OmegaConf.load(config_file))
        fixed = True
    else:
        items = str(run_config.get(RUN_OVERRIDES, "")).split()
        name = next((i.split("=", 1)[1] for i in items if i.startswith("strategy=")), DEFAULT_STRATEGY)
        rest = [i for i in items if not i.startswith("strategy=")]
        cfg = typed(OmegaConf.merge({"strategy": {"name": name}}, OmegaConf.from_dotlist(rest)))
        fixed = any(i.startswith("data.num_clients=") for i in rest)
    if not run_dir:
        run_dir = str(Path.home() / ".fedhyper" / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    return Experiment(cfg, Path(run_dir), fixed, resume=bool(run_config.get(RUN_RESUME, False)))
