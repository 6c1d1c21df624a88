"""The experiment's configuration: one dataclass per group, the only source of defaults.

``simulations/`` registers these in Hydra's ConfigStore; the ServerApp rebuilds them from
the resolved ``config.yaml`` a launcher wrote, or from defaults plus overrides when it is
started by a bare ``flwr run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedhyper.data import DataConfig
from fedhyper.hypernet import HyperNetConfig
from fedhyper.models import ModelConfig
from fedhyper.privacy import PrivacyConfig
from fedhyper.tracking import TrackingConfig


@dataclass
class SimConfig:
    """Rounds, sampling, and the simulated clients' resources."""

    # The default budget: 450 rounds of 4 clients (1,800 client updates) takes pFedHN past 96%
    # mean accuracy on the pFedHN split of Fashion-MNIST in about 4 minutes on 2 CPU cores (README).
    num_rounds: int = 450
    clients_per_round: int = 4  # small rounds: each update sees a fresher Φ (see OuterConfig.aggregate)
    eval_every: int = 25  # evaluate every this many rounds, and after the last
    # Clients evaluated each time: 0 = all; K = the same seeded sample of K clients every time.
    # With thousands of clients, a sample bounds evaluation's time and the server's peak memory
    # (each evaluated client is sent its own weights).
    eval_clients: int = 0
    # Evaluate each client's test split beside its validation split (data.val_fraction). Tuning
    # trials set false: what they choose is then chosen on validation accuracy alone.
    eval_test: bool = True
    # novel_clients > 0: rounds after training in which only the held-out clients train and the
    # strategy adapts to them (pFedHN: their embeddings, with the hypernetwork frozen).
    novel_rounds: int = 50
    client_cpus: int = 1  # Ray CPUs per simulated client: cores // client_cpus run at once
    client_gpus: float = 0.0  # fraction of a GPU per simulated client; 0 trains on the CPU
    round_timeout: float = 600.0  # seconds to wait for a round's replies
    poll_interval: float = 0.01  # seconds between the ServerApp's checks for replies (Flower's default: 0.1)
    # Seconds between hand-overs of waiting messages to simulated clients (simulations/sweep.py);
    # 0 keeps Flower's own sweep, one ask per node every 0.1 s.
    sweep_interval: float = 0.005
    # torch threads of the ServerApp process (0: torch's default, one per core). Its work between rounds
    # is many small ops; with more threads than idle cores, OpenMP's threads wait on each other, and on a
    # busy 2-core machine a round's server work took 5-10x longer with 2 threads than with 1.
    server_threads: int = 1
    ray_address: str = "local"  # "local": a private Ray instance; "host:port" attaches to a cluster
    max_update_norm: float = 1000.0  # a reply whose ||θ_i − θ̃_i|| exceeds this is left out; 0 disables
    min_replies: int = 1  # a round with fewer valid train replies changes nothing
    # Stop the run with an error after this many training rounds in a row that changed nothing (fewer than
    # min_replies valid replies): clients that all fail, every round, would otherwise finish a "run" that
    # reports the untrained model's accuracy. It writes idle.json (the round, the clients' errors); when every
    # reply those rounds left out had diverged (NaN/Inf, an update over the bound), a grid counts the run
    # ended without a result (a tuning trial failed) and does not run it again. 0: never stop.
    max_idle_rounds: int = 5
    checkpoint_every: int = 0  # write checkpoint.pt every this many rounds (0: never)
    flower_logs: bool = False  # also show Flower's per-round INFO lines (fedhyper prints one a round)

    def validate(self, num_clients: int) -> None:
        if self.num_rounds < 1:
            raise ValueError(f"sim.num_rounds={self.num_rounds} must be at least 1")
        if not 1 <= self.clients_per_round <= num_clients:
            raise ValueError(
                f"sim.clients_per_round={self.clients_per_round} must be between 1 and data.num_clients={num_clients}"
            )
        if self.max_update_norm < 0:
            raise ValueError(f"sim.max_update_norm={self.max_update_norm} must be >= 0 (0 disables the bound)")
        if not 1 <= self.min_replies <= self.clients_per_round:
            raise ValueError(
                f"sim.min_replies={self.min_replies} must be between 1 and "
                f"sim.clients_per_round={self.clients_per_round}"
            )
        if self.max_idle_rounds < 0:
            raise ValueError(f"sim.max_idle_rounds={self.max_idle_rounds} must be >= 0 (0: never stop)")
        if self.checkpoint_every < 0:
            raise ValueError(f"sim.checkpoint_every={self.checkpoint_every} must be >= 0 (0: no checkpoints)")
        if self.round_timeout <= 0:
            raise ValueError(f"sim.round_timeout={self.round_timeout} must be positive")
        if self.poll_interval <= 0:
            raise ValueError(f"sim.poll_interval={self.poll_interval} must be positive")
        if self.sweep_interval < 0:
            raise ValueError(f"sim.sweep_interval={self.sweep_interval} must be >= 0 (0: Flower's own sweep)")
        if self.server_threads < 0:
            raise ValueError(f"sim.server_threads={self.server_threads} must be >= 0 (0: one per core)")
        if not 0 <= self.eval_clients <= num_clients:
            raise ValueError(f"sim.eval_clients={self.eval_clients} must be between 0 (all) and {num_clients}")
        if self.novel_rounds < 0:
            raise ValueError(f"sim.novel_rounds={self.novel_rounds} must be >= 0")
        if self.eval_every < 1:
            raise ValueError(f"sim.eval_every={self.eval_every} must be at least 1")
        if self.client_cpus < 1:
            raise ValueError(f"sim.client_cpus={self.client_cpus} must be a whole number >= 1")
        if not 0 <= self.client_gpus <= 1:
            raise ValueError(f"sim.client_gpus={self.client_gpus} must be in [0, 1] (a fraction of one GPU)")


FAULT_KINDS = ("raise", "timeout", "nan", "shape", "huge")


@dataclass
class FaultConfig:
    """Make a fraction of each round's sampled clients fail on purpose (to test and demonstrate)."""

    fraction: float = 0.0  # share of each round's sampled clients told to fail (0: none)
    kind: str = "raise"  # raise | timeout | nan | shape | huge

    def validate(self) -> None:
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"faults.fraction={self.fraction} must be in [0, 1]")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"faults.kind={self.kind!r} is unknown; choose one of {', '.join(FAULT_KINDS)}")


@dataclass
class ExperimentConfig:
    """One run: a strategy, the data and target model, the simulation, a seed."""

    strategy: Any = None  # a registered strategy's config dataclass (strategies.registry.REGISTRY)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    hnet: HyperNetConfig = field(default_factory=HyperNetConfig)  # the hypernetwork of pFedHN and pFedHN-PC
    sim: SimConfig = field(default_factory=SimConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # TensorBoard or MLflow (fedhyper.tracking)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)  # client-level DP (fedhyper.privacy, docs/privacy.md)
    seed: int = 0  # partitions, sampling, initialisation and every client's batch order
    # Clients held out of training and personalised afterwards (pFedHN: their embeddings are
    # fitted with the hypernetwork frozen for sim.novel_rounds rounds); summary.json reports their
    # accuracy beside the trained clients' and the gap.
    novel_clients: int = 0
    device: str = "auto"  # server-side device for the hypernetwork: auto | cpu | cuda
    resume: str | None = None  # a run directory to continue from its checkpoint (launcher option)

    def validate(self) -> None:
        """Raise ValueError naming the first option that cannot work."""
        self.data.validate()
        self.sim.validate(self.data.num_clients)
        self.faults.validate()
        self.tracking.validate()
        self.hnet.validate()
        trained = self.data.num_clients - self.novel_clients
        if not 0 <= self.novel_clients < self.data.num_clients:
            raise ValueError(f"novel_clients={self.novel_clients} must be in [0, data.num_clients)")
        if self.sim.clients_per_round > trained:
            raise ValueError(
                f"sim.clients_per_round={self.sim.clients_per_round} exceeds the {trained} clients "
                f"left for training by novel_clients={self.novel_clients}"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device={self.device!r} is unknown; choose auto, cpu or cuda")
        if self.strategy is not None and hasattr(self.strategy, "validate"):
            self.strategy.validate()
        # A strategy config whose options constrain other sections checks them in ``validate_with(experiment)``.
        if hasattr(self.strategy, "validate_with"):
            self.strategy.validate_with(self)
        self.privacy.validate(trained)
        # A strategy config declares ``private_training = True`` (a ClassVar) when its server has a DP path.
        private = getattr(self.strategy, "private_training", False) and self.hnet.input != "data"
        if self.privacy.enabled and not private:
            name = getattr(self.strategy, "name", None)
            raise ValueError(f"privacy.* is not implemented for strategy={name} with hnet.input={self.hnet.input}; "
                             "use pfedhn, pfedhn_pc or a shared-model strategy (fedavg, fedprox, ...)")  # fmt: skip
        self.model.validate()
        # A strategy config declares ``varied_widths = True`` (a ClassVar) when its server can serve
        # each client a model of the client's own width; the others share one full-width model.
        narrow = sorted({w for w in self.model.width_multipliers if w != 1.0})
        if narrow and self.strategy is not None and not getattr(self.strategy, "varied_widths", False):
            raise ValueError(
                f"model.width_multipliers={self.model.width_multipliers}: strategy={self.strategy.name} shares one "
                "full-width model among clients; use pfedhn or pfedhn_pc, or leave model.width_multipliers empty"
            )
