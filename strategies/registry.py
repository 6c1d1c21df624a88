"""Every strategy module, imported once, and the registry they fill: ``strategy=<name>`` selects one.

Each module registers itself in ``fedhyper.algorithms`` (``register_server(<Algo>Config, build)``,
the name is its config's ``name``); importing the module is what adds it. A strategy whose clients
run more than plain training also has ``clients/<name>.py``, registered under the same name.
"""

from __future__ import annotations

from typing import Any

from fedhyper.algorithms import ALGORITHMS, ServerSide
from strategies import (  # noqa: F401  (each registers itself)
    ditto,
    fedavg,
    fedavg_ft,
    fedhyper,
    fedper,
    fedprox,
    fedrep,
    lg_fedavg,
    local,
    pefll,
    perfedavg,
    pfedhn,
    pfedhn_pc,
    pfedla,
    pfedme,
)
from strategies.base import PersonalizedStrategy
from strategies.directory import ClientDirectory

REGISTRY: dict[str, ServerSide] = ALGORITHMS.servers  # name -> config class and builder


def get(name: str) -> ServerSide:
    """The registered strategy ``name``; ValueError naming the known ones otherwise."""
    return ALGORITHMS.server(name)


def build(cfg: Any, directory: ClientDirectory) -> PersonalizedStrategy:
    """The strategy ``cfg.strategy.name`` for the clients of ``directory``."""
    return get(cfg.strategy.name).build(cfg, directory)
