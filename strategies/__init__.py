"""Server-side strategies, registered by name; ``strategy=<name>`` selects one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strategies import pfedhn
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


register(StrategyEntry("pfedhn", pfedhn.PFedHNConfig, pfedhn.build))
