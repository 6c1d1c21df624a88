"""The server side of pFedHN: the hypernetwork, its outer optimiser and one update step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedhyper.hypergrad import AGGREGATES, example_weights, hypernet_gradients
from fedhyper.hypernet import HyperNetwork
from fedhyper.privacy import ClientClipping
from fedhyper.training import SCHEDULES, schedule_factor

OPTIMIZERS = ("sgd", "adam")  # strategy.outer.optimizer
WEIGHTINGS = ("uniform", "examples")  # strategy.outer.weighting
EVAL_NOISE_SEED_OFFSET = 7_919  # evaluation ensembles' generator: the run's seed plus this


@dataclass
class OuterConfig:
    """The hypernetwork's optimiser; pFedHN's defaults."""

    lr: float = 1e-2  # learning rate of Φ, SGD or Adam (and of the embeddings unless embedding_lr)
    momentum: float = 0.9  # SGD momentum (Adam ignores it)
    weight_decay: float = 1e-3  # on Φ only; embeddings are not decayed
    embedding_lr: float | None = None  # None: the same as lr
    grad_clip: float = 50.0  # max norm of Φ's gradient; 0 disables
    # How a round's client gradients combine: "sum" (each client counts as one pFedHN step,
    # so clients_per_round=K moves Φ like K reference steps) or "mean" (a K-times smaller step).
    aggregate: str = "sum"
    # Each client's share of that combination: "uniform" (every client alike, as pFedHN's one-client
    # steps count a client of 20 examples as one of 2,000) or "examples" (n_i / Σn, FedAvg's weighting).
    # Under client-level DP (privacy.*) the weights are uniform whatever this says: a client's example
    # count is its data, and through n_i / Σn it would set every other client's weight.
    weighting: str = "uniform"
    # sgd: pFedHN's SGD with momentum; adam: Adam (momentum unused), weight_decay as its L2 term on Φ.
    optimizer: str = "sgd"
    # constant: lr in every round; cosine: lr × (1 + cos(π (r − 1) / R)) / 2 in round r of R, from lr in
    # round 1 towards 0 in round R (Loshchilov and Hutter, SGDR, ICLR 2017, without restarts). Relative
    # to the run's rounds, so a short tuning run decays as the long run it stands for does.
    schedule: str = "constant"
    # hnet.base=true: the base θ_0 moves by base_lr × the step's client-weighted mean of Δ_i (weights as
    # ``weighting`` says, normalised to sum to 1): 1.0 is FedAvg's server step. Plain SGD, apart from
    # ``optimizer``: no momentum, weight decay, clipping or schedule, as FedAvg's server has none.
    base_lr: float = 1.0

    def validate(self, prefix: str = "strategy.outer") -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"{prefix}.optimizer={self.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}")
        if self.base_lr <= 0:
            raise ValueError(f"{prefix}.base_lr={self.base_lr} must be positive (1.0: FedAvg's server step)")
        if self.lr <= 0 or (self.embedding_lr is not None and self.embedding_lr <= 0):
            raise ValueError(f"{prefix}.lr={self.lr} and {prefix}.embedding_lr={self.embedding_lr} must be positive")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"{prefix}.aggregate={self.aggregate!r} is unknown; choose one of {', '.join(AGGREGATES)}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"{prefix}.weighting={self.weighting!r} is unknown; choose one of {', '.join(WEIGHTINGS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"{prefix}.schedule={self.schedule!r} is unknown; choose one of {', '.join(SCHEDULES)}")

    def lr_factor(self, server_round: int, num_rounds: int) -> float:
        """The share of ``lr`` that round ``server_round`` (from 1) of ``num_rounds`` steps with."""
        return schedule_factor(self.schedule, server_round, num_rounds)

    def client_weights(self, num_examples: list[int], private: bool = False) -> torch.Tensor:
        """[B] weights of a step's clients in Φ's gradient, from their example counts; uniform if ``private``."""
        counts = num_examples if self.weighting == "examples" and not private else [1] * len(num_examples)
        return example_weights(counts, self.aggregate)


def outer_optimizer(hnet: HyperNetwork, cfg: OuterConfig) -> torch.optim.Optimizer:
    """Φ's optimiser: every shared parameter but the base (``base_optimizer``), and the embeddings."""
    base = {id(p) for p in hnet.base_parameters()}
    groups = [{"params": [p for p in hnet.shared_parameters() if id(p) not in base]}]
    if hnet.embedding_parameters():  # input=data has none: its descriptors come from the clients
        groups.append({"params": hnet.embedding_parameters(), "weight_decay": 0.0, "lr": cfg.embedding_lr or cfg.lr})
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )


def base_optimizer(hnet: HyperNetwork, cfg: OuterConfig) -> torch.optim.Optimizer | None:
    """The base's SGD at ``cfg.base_lr`` (its gradient is divided by the clients' total weight); None without one."""
    params = hnet.base_parameters()
    return torch.optim.SGD(params, lr=cfg.base_lr) if params else None


class HyperNetTrainer:
    """Generates a round's weights in one forward and applies the clients' deltas in one backward.

    A conditioner that needs a per-call input (``extra``) is given it: noise for ``hnet.input=noise``,
    drawn by ``sample_noise`` from the trainer's own seeded generator, or the clients' descriptors
    for ``hnet.input=data``, which the caller passes.
    """

    def __init__(
        self,
        hnet: HyperNetwork,
        cfg: OuterConfig,
        seed: int = 0,
        privacy: ClientClipping | None = None,
        num_rounds: int = 0,
    ) -> None:
        self.hnet = hnet
        self.cfg = cfg
        self.privacy = privacy  # client-level DP: each client's part of Φ's gradient clipped, the sum noised
        self.optimizer = outer_optimizer(hnet, cfg)
        self.base_optimizer = base_optimizer(hnet, cfg)
        self.initial_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.num_rounds = num_rounds  # the schedule's horizon (cfg.schedule); 0: the learning rate stays
        self.device = next(hnet.parameters()).device
        self.noise_rng = torch.Generator().manual_seed(seed)  # training's draws (sample_noise)
        # evaluation's ensembles draw from their own generator, so that when and how often the run
        # evaluates does not change what training draws
        self.eval_noise_rng = torch.Generator().manual_seed(seed + EVAL_NOISE_SEED_OFFSET)
        self.embedding_optimizer: torch.optim.Optimizer | None = None  # novel clients' rounds only
        # Spectral norm's power iteration runs on every forward in training mode, which would make the
        # weights regenerated in step() differ from those sent; it runs once per step instead.
        self.hnet.eval()

    def sample_noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The conditioner's random per-call input for ``batch`` clients, from ``generator`` (by default
        training's); None for a conditioner without one."""
        noise = self.hnet.conditioner.sample(batch, self.noise_rng if generator is None else generator)
        return None if noise is None else noise.to(self.device)

    @torch.no_grad()
    def generate(self, client_ids: list[int], extra: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Detached weights for ``client_ids``: name -> [B, *shape]."""
        extra = None if extra is None else extra.to(self.device)
        return self.hnet(torch.as_tensor(client_ids, device=self.device), extra)

    @torch.no_grad()
    def generate_ensemble(self, client_ids: list[int], samples: int) -> dict[str, torch.Tensor]:
        """``samples`` models per client from fresh noise (evaluation's generator): name -> [samples, B, *shape]."""
        noise = self.sample_noise(samples * len(client_ids), self.eval_noise_rng)
        weights = self.generate(client_ids * samples, noise)
        return {n: w.view(samples, len(client_ids), *w.shape[1:]) for n, w in weights.items()}

    def step(
        self,
        client_ids: list[int],
        trained: dict[str, torch.Tensor],
        num_examples: list[int],
        extra: torch.Tensor | None = None,
        server_round: int | None = None,
        weights: torch.Tensor | None = None,
        round_weight: float | None = None,
    ) -> float:
        """One outer step from the clients' trained weights; returns Φ's gradient norm (the base's left out).

        In round ``server_round`` the optimiser steps at ``cfg.lr_factor`` of its learning rates;
        None steps at the rates it has.

        A step over one group of a round's clients (``strategies.fedhyper``'s ``clients_per_step``) gets
        ``weights`` [B], these clients' weights as the whole round's step would give them
        (``client_weights`` of the round), and ``round_weight``, the round's sum of them: the base then
        moves by this group's share of the round's weighted mean Δ, so the groups together move it as far
        as one step over the round would. Without them the clients are the whole round.

        ``extra`` [B, extra_dim] must be the per-call input the clients' weights were generated
        with. Without a private table the conditioner's leaf is ``extra`` itself (descriptors):
        given one that requires grad, its ``.grad`` receives each client's own gradient (to go
        back to the clients that computed it).
        """
        ids = torch.as_tensor(client_ids, device=self.device)
        conditioner = self.hnet.conditioner
        given = None if extra is None else extra.detach().to(self.device)
        leaf = conditioner.leaf(ids, given)  # [B, d]
        if not conditioner.private:
            leaf = leaf.detach().requires_grad_(True)
        condition, shared = conditioner.condition(leaf, given), self.hnet.shared_parameters()
        weights = self.client_weights(num_examples) if weights is None else weights.to(self.device)
        shared_grads, leaf_grads = self._backprop(condition, leaf, trained, weights, shared)
        if self.privacy is not None:
            shared_grads = self.privacy.noised(shared_grads)
        for p, g in zip(shared, shared_grads, strict=True):
            p.grad = g
        if conditioner.private:
            self._set_embedding_grad(ids, leaf_grads)
        elif extra is not None and extra.requires_grad:
            extra.grad = leaf_grads.to(extra.device)
        base = self.hnet.base_parameters()
        if base:  # −Σ w_i Δ_i over Σ w_i: the weighted mean Δ, which base_lr=1 adds as FedAvg's server does
            base[0].grad = base[0].grad / (round_weight or float(weights.sum()))
            shared = [p for p in shared if p is not base[0]]
        norm = torch.nn.utils.clip_grad_norm_(shared, self.cfg.grad_clip or float("inf"))
        if server_round is not None:
            self.schedule(self.optimizer, self.initial_lrs, server_round)
        self.optimizer.step()
        if self.base_optimizer is not None:
            self.base_optimizer.step()
        if self.hnet.cfg.spectral_norm:
            self._power_iteration()
        return float(norm)

    def schedule(self, optimizer: torch.optim.Optimizer, initial_lrs: list[float], server_round: int) -> None:
        """Set each of ``optimizer``'s group rates to its initial one × ``cfg.lr_factor`` of ``server_round``."""
        factor = self.cfg.lr_factor(server_round, self.num_rounds)
        for group, lr in zip(optimizer.param_groups, initial_lrs, strict=True):
            group["lr"] = lr * factor

    def client_weights(self, num_examples: list[int]) -> torch.Tensor:
        """The clients' weights w_i [B] in the outer step (``cfg.weighting``; alike under privacy), on the device."""
        return self.cfg.client_weights(num_examples, private=self.privacy is not None).to(self.device)

    def _backprop(
        self,
        condition: torch.Tensor,
        leaf: torch.Tensor,
        trained: dict[str, torch.Tensor],
        weights: torch.Tensor,
        params: list[torch.nn.Parameter],
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Generate from ``condition``, pull the clients' Δ_i back with ``weights`` [B]: gradients of ``params``
        and ``leaf`` [B, d]."""
        generated = self.hnet.generate(condition)
        deltas = {n: trained[n].to(self.device) - generated[n].detach() for n in generated}
        if self.privacy is not None and params:  # Φ's step: each client's part clipped to C
            weights = self.privacy.clipped(weights, self.hnet, params, condition, deltas)
        return hypernet_gradients(generated, deltas, weights, params, leaf)

    def _set_embedding_grad(self, ids: torch.Tensor, leaf_grads: torch.Tensor) -> None:
        """The embedding table's gradient: each client's row gets its own, every other row zero."""
        table = self.hnet.conditioner.table.weight
        table.grad = torch.zeros_like(table).index_add_(0, ids, leaf_grads)

    @torch.no_grad()
    def _power_iteration(self) -> None:
        """One power-iteration step of every spectrally normalised layer, after Φ moved."""
        self.hnet.train()
        self.hnet.generate(torch.zeros(1, self.hnet.conditioner.dim, device=self.device))
        self.hnet.eval()

    def fit_embeddings(
        self,
        client_ids: list[int],
        trained: dict[str, torch.Tensor],
        num_examples: list[int],
        extra: torch.Tensor | None = None,
    ) -> None:
        """Move only these clients' embeddings towards their trained weights, Φ frozen (pFedHN, 5.3).

        A separate optimiser: the main one's momentum would keep moving the trained clients' rows.
        """
        conditioner = self.hnet.conditioner
        if not conditioner.private:
            raise ValueError(f"hnet.input={self.hnet.cfg.input} has no per-client embeddings to fit")
        ids = torch.as_tensor(client_ids, device=self.device)
        extra = None if extra is None else extra.to(self.device)
        leaf = conditioner.leaf(ids, extra).detach().requires_grad_(True)
        weights = self.client_weights(num_examples)
        _, leaf_grads = self._backprop(conditioner.condition(leaf, extra), leaf, trained, weights, [])
        self._set_embedding_grad(ids, leaf_grads)
        self._embedding_optimizer().step()
        self.hnet.zero_grad(set_to_none=True)

    def _embedding_optimizer(self) -> torch.optim.Optimizer:
        """The novel clients' embeddings' optimiser: the kind and rate the trained clients' embeddings step with."""
        if self.embedding_optimizer is None:
            lr = self.cfg.embedding_lr or self.cfg.lr
            params = self.hnet.embedding_parameters()
            self.embedding_optimizer = (
                torch.optim.Adam(params, lr=lr)
                if self.cfg.optimizer == "adam"
                else torch.optim.SGD(params, lr=lr, momentum=self.cfg.momentum)
            )
        return self.embedding_optimizer

    def state_dict(self) -> dict:
        state = {"hnet": self.hnet.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "noise_rng": self.noise_rng.get_state(),
                 "eval_noise_rng": self.eval_noise_rng.get_state()}  # fmt: skip
        if self.embedding_optimizer is not None:
            state["embedding_optimizer"] = self.embedding_optimizer.state_dict()
        if self.privacy is not None:
            state["privacy"] = self.privacy.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.hnet.load_state_dict(state["hnet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.noise_rng.set_state(state["noise_rng"])
        if "eval_noise_rng" in state:  # a checkpoint from before evaluation had its own generator has none
            self.eval_noise_rng.set_state(state["eval_noise_rng"])
        if "embedding_optimizer" in state:
            self._embedding_optimizer().load_state_dict(state["embedding_optimizer"])
        if self.privacy is not None:
            self.privacy.load_state_dict(state["privacy"])
