"""pFedMe: personalised models through Moreau envelopes. Each client solves for a personal model
θ close to its local model w (lambda ||θ − w||²) on every batch and pulls w towards it; the
server moves the global model a fraction beta towards the mean of the clients' w.

Dinh, Tran, Nguyen. "Personalized Federated Learning with Moreau Envelopes". NeurIPS 2020.
https://arxiv.org/abs/2006.08848
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from fedhyper import protocol
from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from fedhyper.search import LOCAL_LR_SPACE, EvalSpace, Range, SearchSpace
from fedhyper.training import LocalTrainConfig
from strategies.directory import ClientDirectory
from strategies.replies import Reply
from strategies.shared import SharedModelConfig, SharedModelStrategy, shared_weights


@dataclass
class PFedMeConfig(SharedModelConfig):
    """The paper's settings (eta 0.005, lambda 15, K 5, beta 1) with its code's CIFAR-10 personal lr.

    The paper's MNIST personal lr, 0.1, made this CNN's personal model diverge to NaN within
    two rounds in a tiny grid; 0.01 is what its authors' code uses for CIFAR-10's CNN.
    """

    name: str = "pfedme"
    search_space: ClassVar[SearchSpace] = {
        **LOCAL_LR_SPACE,
        "strategy.lam": Range(1.0, 30.0, log=True),
        "strategy.personal_lr": Range(1e-3, 1e-1, log=True),
    }
    # chosen at convergence (settle=true): the kept θ, or θ of a local round run at evaluation
    eval_space: ClassVar[EvalSpace] = {"strategy.personalize_at_eval": (False, True)}
    local: LocalTrainConfig = field(default_factory=LocalTrainConfig)  # local.lr is eta
    lam: float = 15.0  # lambda: pull of the personal model towards the local model
    personal_lr: float = 0.01  # step size solving for the personal model (its code's CIFAR-10 value)
    inner_steps: int = 5  # K: steps solving for θ per batch
    beta: float = 1.0  # the server's step towards the clients' mean; 1 is FedAvg's replacement
    # Before an evaluation each client runs a local round from the received w (nothing kept or sent) and is
    # evaluated on its θ, as the paper's Algorithm 1, where every client runs each round, evaluates it;
    # false: on θ of its last training round, as old as its last sampling (the received w if never sampled).
    personalize_at_eval: bool = False

    def validate(self) -> None:
        super().validate()
        if self.lam <= 0 or self.personal_lr <= 0 or self.inner_steps < 1 or not 0 < self.beta <= 2:
            raise ValueError(
                "pFedMe needs strategy.lam > 0, strategy.personal_lr > 0, strategy.inner_steps >= 1 "
                f"and 0 < strategy.beta <= 2; got {self.lam}, {self.personal_lr}, {self.inner_steps}, {self.beta}"
            )


class PFedMe(SharedModelStrategy):
    """The server's update is w <- (1 − beta) w + beta · mean_i(w_i)."""

    def __init__(self, *args, beta: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beta = beta

    def aggregate(self, replies: dict[int, Reply]) -> dict[str, torch.Tensor]:
        mean = super().aggregate(replies)
        return {n: (1 - self.beta) * self.weights[n] + self.beta * mean[n] for n in mean}


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> PFedMe:
    s = cfg.strategy
    settings = {protocol.PROX_MU: s.lam, protocol.INNER_LR: s.personal_lr, protocol.INNER_STEPS: s.inner_steps,
                protocol.PERSONALIZE_AT_EVAL: int(s.personalize_at_eval)}  # fmt: skip
    return PFedMe(cfg, directory, shared_weights(cfg, "all"), settings, beta=s.beta)


register_server(PFedMeConfig, build)
