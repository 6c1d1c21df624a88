"""Per-FedAvg: FedAvg on the MAML objective f(w − alpha ∇f(w)) (first-order variant); each
client personalises the global model with a few alpha-steps on its own data before evaluation.

Fallah, Mokhtari, Ozdaglar. "Personalized Federated Learning with Theoretical Guarantees: A
Model-Agnostic Meta-Learning Approach". NeurIPS 2020. https://arxiv.org/abs/2002.07948
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fedhyper import protocol
from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from fedhyper.search import FINETUNE_STEPS, LOCAL_LR_SPACE, EvalSpace, Range, SearchSpace
from strategies.directory import ClientDirectory
from strategies.shared import SharedModelConfig, SharedModelStrategy, shared_weights


@dataclass
class PerFedAvgConfig(SharedModelConfig):
    name: str = "perfedavg"
    search_space: ClassVar[SearchSpace] = {**LOCAL_LR_SPACE, "strategy.alpha": Range(1e-3, 1e-1, log=True)}
    # Chosen at convergence (settle=true) from FedAvg-FT's fine-tuning steps and the paper's one, so that no
    # strategy's adaptation is offered fewer steps than another's; alpha stays as tuned.
    eval_space: ClassVar[EvalSpace] = {"strategy.adapt_steps": tuple(sorted({1, *FINETUNE_STEPS}))}
    # local.lr is the meta step beta (the paper's 1e-3 barely moves in fedhyper's 50-step rounds, so
    # the shared 5e-3); momentum and weight decay do not apply to meta-steps.
    alpha: float = 1e-2  # the inner (adaptation) step size
    adapt_steps: int = 1  # alpha-steps before evaluation: the paper evaluates after one

    def validate(self) -> None:
        super().validate()
        if self.alpha <= 0 or self.adapt_steps < 0:
            raise ValueError(f"strategy.alpha={self.alpha} must be positive and strategy.adapt_steps >= 0")


class PerFedAvg(SharedModelStrategy):
    """FedAvg's server; meta-learning happens on the clients."""


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> PerFedAvg:
    settings = {protocol.INNER_LR: cfg.strategy.alpha, protocol.ADAPT_STEPS: cfg.strategy.adapt_steps}
    return PerFedAvg(cfg, directory, shared_weights(cfg, "all"), settings)


register_server(PerFedAvgConfig, build)
