"""Client-level differential privacy: the options, σ calibration, and Flower's RDP accountant.

The mechanism (Abadi et al., CCS 2016; McMahan et al., "Learning Differentially Private Recurrent
Language Models", ICLR 2018): each round's sampled clients each contribute one update, clipped
to L2 norm C on its own; the clipped sum gets Gaussian noise of standard deviation σ·C; the server
steps from the noised sum. Accounting uses Flower's ``RdpAccountant`` (``flwr.serverapp``, backed
by Google's ``dp-accounting``) with the sampling the round loop does: a fixed-size sample of K of
the N training clients without replacement, and the replace-one neighbouring relation (N is
public, one client's data is swapped for another's).

Under replace-one, swapping one client's data moves a sum of updates clipped to C by up to 2C,
so the sum's L2 sensitivity is 2C and the accounted noise multiplier (noise std / sensitivity)
is σ/2 (``accounted_noise_multiplier``): with σ·C noise, ε is what a Gaussian of multiplier σ/2
costs. What is protected, from whom, and what is not: docs/privacy.md.
"""

from __future__ import annotations

import functools
import math
import secrets
from dataclasses import dataclass
from typing import Any

import torch
from flwr.serverapp import GaussianPrivacyEvent, NeighboringRelation, RdpAccountant, SamplingMethod
from flwr.serverapp import PrivacyConfig as FlowerPrivacyConfig

from fedhyper.hypergrad import flat_norms, per_client_gradients

# RDP orders the accountant evaluates: any order gives a valid bound, the smallest is reported.
# dp-accounting's default 160 orders cost ~0.5 s per composition (order 256 alone 0.16 s);
# these 29 cost ~0.08 s and gave the same ε to 4 digits on the settings checked (σ/2 in 0.25..4,
# K/N in 4/50..10/100, 200..450 rounds; at σ/2 = 10 the bound is 0.8% looser).
ORDERS = (1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 24, 28, 32,
          40, 48, 64, 128, 512, 1024)  # fmt: skip
REPLACE_ONE_SENSITIVITY = 2.0  # in units of C: a sum of updates clipped to C moves by ≤ 2C when one is replaced
ACCOUNTING = "rdp (flwr RdpAccountant), fixed-size sampling without replacement, replace-one"


@dataclass
class PrivacyConfig:
    """Client-level DP of what the server releases (Φ, the shared model); off unless σ or a target is given."""

    # σ: the clipped sum of a round's client contributions gets Gaussian noise of std σ·C.
    # None (and no target_epsilon): no privacy. 0: clipping only, no guarantee (ε = ∞).
    noise_multiplier: float | None = None
    clip: float = 1.0  # C: each client's contribution is scaled down to L2 norm C (inf only with σ = 0)
    delta: float | None = None  # δ of the reported (ε, δ); None: 1 / the number of training clients
    max_epsilon: float | None = None  # budget: training stops before the round that would pass it
    # Calibrate σ before the run so that all sim.num_rounds rounds spend this ε (replaces noise_multiplier).
    target_epsilon: float | None = None
    # The noise generator's seed. None: from the OS's entropy, so that nobody can regenerate the noise
    # from the seed published in config.yaml; set it only to reproduce a run (tests).
    noise_seed: int | None = None

    @property
    def enabled(self) -> bool:
        return self.noise_multiplier is not None or self.target_epsilon is not None

    def validate(self, population: int) -> None:
        """Raise ValueError naming the first option that cannot work (``population``: training clients)."""
        if self.noise_multiplier is not None and self.target_epsilon is not None:
            raise ValueError("give privacy.noise_multiplier or privacy.target_epsilon, not both")
        if not self.enabled:
            if self.max_epsilon is not None:
                raise ValueError("privacy.max_epsilon needs privacy.noise_multiplier or privacy.target_epsilon")
            return
        if self.noise_multiplier is not None and not 0 <= self.noise_multiplier < math.inf:
            raise ValueError(f"privacy.noise_multiplier={self.noise_multiplier} must be a finite number >= 0")
        if not self.clip > 0:
            raise ValueError(f"privacy.clip={self.clip} must be positive")
        if math.isinf(self.clip) and self.noise_multiplier != 0:
            raise ValueError("privacy.clip=inf bounds nothing: use it only with privacy.noise_multiplier=0")
        delta = self.resolved_delta(population)
        if not 0 < delta < 1:
            raise ValueError(f"privacy.delta={delta} must be in (0, 1) (default 1 / {population} training clients)")
        for name in ("max_epsilon", "target_epsilon"):
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:
                raise ValueError(f"privacy.{name}={value} must be positive and finite")

    def resolved_delta(self, population: int) -> float:
        return 1.0 / population if self.delta is None else self.delta


def accounted_noise_multiplier(sigma: float) -> float:
    """Noise std over the replace-one sensitivity (2C) for noise of std σ·C."""
    return sigma / REPLACE_ONE_SENSITIVITY


@functools.lru_cache(maxsize=4096)  # a round's check asks for ε after the next round, then for the same again
def epsilon(sigma: float, rounds: int, sample_size: int, population: int, delta: float) -> float:
    """ε at ``delta`` after ``rounds`` rounds of K=``sample_size`` of N=``population``, noise σ·C (∞ for σ=0)."""
    if rounds == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    return flower_accountant(sigma, rounds, sample_size, population, delta).get_epsilon(delta)


def flower_accountant(sigma: float, rounds: int, sample_size: int, population: int, delta: float) -> RdpAccountant:
    """Flower's accountant with ``rounds`` identical releases composed (one ledger entry)."""
    accountant = RdpAccountant(flower_config(delta, population), orders=ORDERS)
    if rounds:
        event = GaussianPrivacyEvent(accounted_noise_multiplier(sigma), sample_size, population)
        accountant.compose(event, rounds)
    return accountant


def flower_config(delta: float, population: int) -> FlowerPrivacyConfig:
    return FlowerPrivacyConfig(delta, population, NeighboringRelation.REPLACE_ONE, SamplingMethod.WITHOUT_REPLACEMENT)


@functools.lru_cache(maxsize=32)
def calibrate(target_epsilon: float, delta: float, rounds: int, sample_size: int, population: int) -> float:
    """The smallest σ (to 0.1%) whose ``rounds`` rounds spend at most ``target_epsilon``: a bisection in log σ."""
    low, high = 1e-3, 1.0
    while epsilon(high, rounds, sample_size, population, delta) > target_epsilon:
        low, high = high, high * 2
        if high > 1e6:
            raise ValueError(f"privacy.target_epsilon={target_epsilon} needs σ > 1e6; raise it or train fewer rounds")
    while high / low > 1.001:
        middle = math.sqrt(low * high)
        low, high = (middle, high) if epsilon(middle, rounds, sample_size, population, delta) > target_epsilon else (
            low, middle)  # fmt: skip
    return high


@dataclass(frozen=True)
class Mechanism:
    """The run's resolved mechanism: σ (given or calibrated), C, δ, and the sampling it is accounted for."""

    noise_multiplier: float
    clip: float
    delta: float
    sample_size: int  # K clients a round
    population: int  # N training clients
    rounds: int  # the training rounds planned
    max_epsilon: float | None
    noise_seed: int | None

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise added to the clipped sum: σ·C (0 when σ = 0)."""
        return self.noise_multiplier * self.clip if self.noise_multiplier else 0.0

    def epsilon(self, rounds: int) -> float:
        return epsilon(self.noise_multiplier, rounds, self.sample_size, self.population, self.delta)

    def noise_generator(self) -> torch.Generator:
        seed = secrets.randbits(63) if self.noise_seed is None else self.noise_seed
        return torch.Generator().manual_seed(seed)


def mechanism(cfg: Any) -> Mechanism | None:
    """The mechanism of an ``ExperimentConfig`` (validated), or None when privacy is off."""
    p: PrivacyConfig = cfg.privacy
    if not p.enabled:
        return None
    population = cfg.data.num_clients - cfg.novel_clients
    k, rounds, delta = cfg.sim.clients_per_round, cfg.sim.num_rounds, p.resolved_delta(population)
    sigma = p.noise_multiplier
    if sigma is None:
        sigma = calibrate(p.target_epsilon, delta, rounds, k, population)
    return Mechanism(sigma, p.clip, delta, k, population, rounds, p.max_epsilon, p.noise_seed)


class Accountant:
    """The run's spent privacy: Flower's ``RdpAccountant`` over the training rounds released so far.

    Every training round is the same event (σ/2, K of N), so the ledger is one entry, (event, rounds),
    and ε after r rounds is one composition. A round is spent whether or not enough replies came to
    step (a skipped round is counted: conservative). The novel clients' rounds release nothing of Φ
    (only their own embeddings move) and are not counted.
    """

    def __init__(self, mech: Mechanism) -> None:
        self.mech = mech
        self.rounds = 0

    @property
    def epsilon(self) -> float:
        return self.mech.epsilon(self.rounds)

    def would_exceed(self) -> bool:
        """Whether one more round would pass ``max_epsilon``."""
        return self.mech.max_epsilon is not None and self.mech.epsilon(self.rounds + 1) > self.mech.max_epsilon

    def spend(self) -> None:
        self.rounds += 1

    def report(self) -> dict[str, Any]:
        """summary.json's ``privacy`` object."""
        eps = self.epsilon
        m = self.mech
        return {"epsilon": None if math.isinf(eps) else eps, "delta": m.delta, "noise_multiplier": m.noise_multiplier,
                "clip": m.clip, "rounds": self.rounds, "sample_size": m.sample_size, "population": m.population,
                "accounting": f"{ACCOUNTING}; accounted noise multiplier σ/2 = "
                              f"{accounted_noise_multiplier(m.noise_multiplier):.6g} (replace-one sensitivity 2C)",
                "max_epsilon": m.max_epsilon}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """Flower's accountant state (plain types: dicts, lists, str, numbers) and the rounds spent."""
        m = self.mech
        if not m.noise_multiplier:  # σ = 0: nothing to account, only the count
            return {"rounds": self.rounds, "flower": None}
        flower = flower_accountant(m.noise_multiplier, self.rounds, m.sample_size, m.population, m.delta)
        return {"rounds": self.rounds, "flower": flower.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the rounds spent; Flower refuses a state of another δ or population (ValueError)."""
        m = self.mech
        if state["flower"] is not None:
            flower = flower_accountant(m.noise_multiplier, 0, m.sample_size, m.population, m.delta)
            flower.load_state_dict(state["flower"])
            if flower.num_releases != state["rounds"]:
                raise ValueError(f"checkpoint's accountant holds {flower.num_releases} releases, not {state['rounds']}")
            if math.isfinite(eps := flower.get_epsilon(m.delta)) and not math.isclose(eps, m.epsilon(state["rounds"])):
                raise ValueError("the checkpoint was written with another privacy.noise_multiplier; resume with it")
        self.rounds = int(state["rounds"])


class GaussianNoise:
    """The mechanism's clip C, noise std σ·C and sample size K, and the noise's own generator (checkpointed)."""

    def __init__(self, mech: Mechanism) -> None:
        self.clip, self.noise_std, self.sample_size = mech.clip, mech.noise_std, mech.sample_size
        self.generator = mech.noise_generator()

    def draw(self, like: torch.Tensor) -> torch.Tensor:
        """N(0, (σC)²) noise shaped, typed and placed as ``like``."""
        noise = torch.randn(like.shape, generator=self.generator, dtype=like.dtype)
        return self.noise_std * noise.to(like.device)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class ClientClipping(GaussianNoise):
    """Per-client clipping and Gaussian noise of Φ's gradient in ``HyperNetTrainer.step``.

    Each sampled client's contribution (∂θ̃_i/∂Φ)ᵀ(−w_i Δ_i) is measured on its own (a VJP per client,
    vectorised with ``torch.func``) and scaled to norm ≤ C by a factor s_i; since the batched VJP is
    linear in each client's ``grad_outputs``, one batched backward with grad_outputs −s_i w_i Δ_i
    gives the clipped sum exactly, at the speed of the non-private step. The weights w_i come uniform
    from the step (``OuterConfig.client_weights(..., private=True)``: a client's example count is its
    data and would set everyone's weight). The client's embedding
    row is neither clipped nor noised: it is not released to anyone (docs/privacy.md).
    """

    def clipped(
        self,
        weights: torch.Tensor,
        hnet: torch.nn.Module,
        shared: list[torch.Tensor],
        condition: torch.Tensor,
        deltas: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """[B] weights s_i w_i from the (uniform) ``weights`` w_i: s_i = min(1, C / ‖client i's contribution‖)."""
        cotangents = {n: -d * weights.view(-1, *([1] * (d.dim() - 1))) for n, d in deltas.items()}
        norms = flat_norms(per_client_gradients(hnet, shared, condition, cotangents))
        return weights * torch.clamp(self.clip / norms, max=1.0)  # C = inf or a zero norm: factor 1 exactly

    def noised(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """The clipped sum plus N(0, (σC)²) on every coordinate; σ = 0 adds nothing (not even −0.0 + 0.0)."""
        if not self.noise_std:
            return grads
        return [g + self.draw(g) for g in grads]


class SharedClipping(GaussianNoise):
    """Server-side fixed clipping and noise of a shared model's updates (the shared-model baselines).

    The maths of Flower's ``DifferentialPrivacyServerSideFixedClipping`` over a uniform FedAvg:
    each client's update θ_i − θ is scaled to norm ≤ C (over all shared tensors together), the
    clipped updates are summed, N(0, (σC)²) is added to every coordinate, and the sum is divided
    by the K clients sampled (a public number: Flower's noise σC/K on the mean is the same).
    """

    def private_mean(
        self, current: dict[str, torch.Tensor], models: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """θ + (Σ_i clip_C(θ_i − θ) + noise) / K for the shared tensors ``current``."""
        updates = [{n: m[n].double() - current[n].double() for n in current} for m in models]
        norms = torch.stack([torch.sqrt(sum(u.pow(2).sum() for u in upd.values())) for upd in updates])
        factors = torch.clamp(self.clip / norms, max=1.0)  # [B]
        new = {}
        for n, w in current.items():
            total = sum(f * upd[n] for f, upd in zip(factors, updates, strict=True))
            if self.noise_std:
                total = total + self.draw(total)
            new[n] = (w.double() + total / self.sample_size).to(w.dtype)
        return new
