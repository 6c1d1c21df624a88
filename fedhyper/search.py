"""Search spaces: what a strategy lets a tuner change, declared beside its config dataclass.

A strategy's config carries ``search_space: ClassVar[SearchSpace]``, a mapping from an experiment
key (``strategy.local.lr``, ``strategy.mu``, ``hnet.embedding_dim``) to a ``Range`` or a
``Choice``. ``simulations.compare ... tune=N`` draws N trials from it for every strategy alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class Trial(Protocol):
    """The part of ``optuna.Trial`` a search space uses."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...


@dataclass(frozen=True)
class Range:
    """A number in [low, high]; ``log`` samples its logarithm uniformly; ``integer`` keeps it whole."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"Range({self.low}, {self.high}, log={self.log}) is empty or not positive for log")

    def suggest(self, trial: Trial, key: str) -> float | int:
        if self.integer:
            return trial.suggest_int(key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(key, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Choice:
    """One of a few values."""

    values: tuple[Any, ...]

    def suggest(self, trial: Trial, key: str) -> Any:
        return trial.suggest_categorical(key, list(self.values))


SearchSpace = Mapping[str, Range | Choice]

# Options that act only when a client evaluates (fine-tuning or adaptation first), declared as
# ``eval_space: ClassVar[EvalSpace]``: each key's candidate values (None: the option's own fallback).
# ``simulations.compare ... settle=true`` evaluates every combination on a finished run's last
# checkpoint, nothing training, and keeps the one with the best validation accuracy. A config whose
# candidates can act alike (a fine-tuning rate with 0 steps) also has ``evaluated_with() -> dict``: what its
# clients' evaluation depends on, fallbacks resolved and options acting on nothing left out; candidates
# with equal ones are evaluated once.
# A config may add ``eval_then: ClassVar[EvalSpace]``, options chosen after ``eval_space``'s with that choice
# fixed (its candidates: the first choice with each combination of theirs), where evaluating the product of
# both would multiply the settle's evaluations for options that barely interact (FedHyper's ensemble weight).
EvalSpace = Mapping[str, tuple[Any, ...]]


def eval_stages(config_cls: type) -> list[EvalSpace]:
    """A strategy config's evaluation spaces in the order ``settle`` chooses them; empty ones left out."""
    return [s for s in (getattr(config_cls, "eval_space", {}), getattr(config_cls, "eval_then", {})) if s]


# A fine-tuning's candidates (FedAvg-FT's, FedHyper's shared model's): the steps and rates both were
# probed with by hand before the stage existed (docs/fedhyper.md); None: the option's fallback rate.
FINETUNE_STEPS: tuple[int, ...] = (0, 3, 5, 10, 20, 36, 72)
FINETUNE_RATES: tuple[float | None, ...] = (None, 0.002, 0.005, 0.01, 0.02)

# Every strategy trains clients with SGD: its learning rate is tuned for all of them.
LOCAL_LR_SPACE: SearchSpace = {"strategy.local.lr": Range(1e-3, 1e-1, log=True)}


def suggest(space: SearchSpace, trial: Trial) -> dict[str, Any]:
    """One trial's values, key -> value, in the space's order."""
    return {key: dist.suggest(trial, key) for key, dist in space.items()}


def candidates(space: EvalSpace) -> list[dict[str, Any]]:
    """Every combination of an evaluation space's values, key -> value, the first key varying slowest."""
    return [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]


def as_overrides(values: Mapping[str, Any]) -> list[str]:
    """``key=value`` overrides for Hydra (floats written exactly, so a run's config is reproducible; None as null)."""
    return [f"{key}={_written(v)}" for key, v in values.items()]


def _written(value: Any) -> str:
    if value is None:
        return "null"
    return repr(float(value)) if isinstance(value, float) else str(value)
