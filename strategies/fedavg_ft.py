"""FedAvg with local fine-tuning: FedAvg's global model, fine-tuned by each client on its own
training data before it is evaluated (the tuned copy is not kept).

Yu, Bagdasaryan, Shmatikov. "Salvaging Federated Learning by Local Adaptation". 2020.
https://arxiv.org/abs/2002.04758 — the pFedHN paper's and FL-bench's "FedAvg-FT" baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from fedhyper import protocol
from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from fedhyper.search import FINETUNE_RATES, FINETUNE_STEPS, LOCAL_LR_SPACE, EvalSpace, Range, SearchSpace
from strategies.directory import ClientDirectory
from strategies.shared import SharedModelConfig, SharedModelStrategy, shared_weights


@dataclass
class FedAvgFTConfig(SharedModelConfig):
    name: str = "fedavg_ft"
    search_space: ClassVar[SearchSpace] = {
        **LOCAL_LR_SPACE,
        "strategy.finetune_steps": Range(1, 50, log=True, integer=True),
    }
    # The fine-tuning, chosen again at convergence (settle=true): None is the local rate, as tuned.
    eval_space: ClassVar[EvalSpace] = {
        "strategy.finetune_steps": FINETUNE_STEPS,
        "strategy.finetune_lr": FINETUNE_RATES,
    }
    finetune_steps: int = 10  # SGD steps (finetune_lr, local.batch_size) on local data before each evaluation
    finetune_lr: float | None = None  # the fine-tuning's learning rate; None: local.lr

    def finetune_rate(self) -> float:
        return self.local.lr if self.finetune_lr is None else self.finetune_lr

    def evaluated_with(self) -> dict[str, Any]:
        """The fine-tuning a client evaluates after (``fedhyper.search``): without steps, no rate."""
        return {"steps": self.finetune_steps, "lr": self.finetune_rate() if self.finetune_steps else None}

    def validate(self) -> None:
        super().validate()
        if self.finetune_steps < 0:
            raise ValueError(f"strategy.finetune_steps={self.finetune_steps} must be >= 0")
        if self.finetune_lr is not None and not self.finetune_lr > 0:
            raise ValueError(f"strategy.finetune_lr={self.finetune_lr} must be > 0 (null: local.lr)")


class FedAvgFT(SharedModelStrategy):
    """FedAvg's server; the clients fine-tune before evaluating."""


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> FedAvgFT:
    settings = {protocol.ADAPT_STEPS: cfg.strategy.finetune_steps, protocol.ADAPT_LR: cfg.strategy.finetune_rate()}
    return FedAvgFT(cfg, directory, shared_weights(cfg, "all"), settings)


register_server(FedAvgFTConfig, build)
