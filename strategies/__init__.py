"""Server-side strategies, registered by name; ``strategy=<name>`` selects one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strategies import (
    ditto,
    fedavg,
    fedavg_ft,
    fedper,
    fedprox,
    fedrep,
    lg_fedavg,
    local,
    perfedavg,
    pfedhn,
    pfedhn_pc,
    pfedla,
    pfedme,
)
from strategies.base import PersonalizedStrategy
from strategies.directory import ClientDirectory


@dataclass(frozen=True)
class StrategyEntry:
    name: str
    config_cls: type
    build: Callable[[Any, ClientDirectory], PersonalizedStrategy]


REGISTRY: dict[str, StrategyEntry] = {}


def register(entry: StrategyEntry) -> None:
    if entry.name in REGISTRY:
        raise ValueError(f"strategy {entry.name!r} is registered twice")
    REGISTRY[entry.name] = entry


def get(name: str) -> StrategyEntry:
    if name not in REGISTRY:
        raise ValueError(f"strategy={name!r} is unknown; choose one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


for _entry in (
    StrategyEntry("local", local.LocalConfig, local.build),
    StrategyEntry("fedavg", fedavg.FedAvgConfig, fedavg.build),
    StrategyEntry("fedavg_ft", fedavg_ft.FedAvgFTConfig, fedavg_ft.build),
    StrategyEntry("fedprox", fedprox.FedProxConfig, fedprox.build),
    StrategyEntry("fedper", fedper.FedPerConfig, fedper.build),
    StrategyEntry("fedrep", fedrep.FedRepConfig, fedrep.build),
    StrategyEntry("lg_fedavg", lg_fedavg.LGFedAvgConfig, lg_fedavg.build),
    StrategyEntry("ditto", ditto.DittoConfig, ditto.build),
    StrategyEntry("perfedavg", perfedavg.PerFedAvgConfig, perfedavg.build),
    StrategyEntry("pfedme", pfedme.PFedMeConfig, pfedme.build),
    StrategyEntry("pfedla", pfedla.PFedLAConfig, pfedla.build),
    StrategyEntry("pfedhn", pfedhn.PFedHNConfig, pfedhn.build),
    StrategyEntry("pfedhn_pc", pfedhn_pc.PFedHNPCConfig, pfedhn_pc.build),
):
    register(_entry)
