"""Who takes part in which round: seeded sampling, held-out (novel) clients, evaluation rounds, faults.

Rounds count from 1 (round 0 is the evaluation before training), the same in a resumed run as
in an uninterrupted one: every decision here is a function of the absolute round number and of
seeded generators whose states the checkpoint keeps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedhyper import protocol
from fedhyper.config import ExperimentConfig, FaultConfig


class Schedule:
    """Samples each round's clients and says which rounds evaluate whom."""

    def __init__(self, cfg: ExperimentConfig, client_ids: list[int], adapts_novel_clients: bool) -> None:
        self.sim = cfg.sim
        self.rng = np.random.default_rng(cfg.seed)  # client sampling
        self.novel_ids = _seeded_sample(client_ids, cfg.novel_clients, [cfg.seed, 3])  # never train with the others
        self.train_ids = [c for c in client_ids if c not in set(self.novel_ids)]
        # The trained clients every evaluation asks: all, or one seeded sample kept for the run.
        k = cfg.sim.eval_clients
        self.eval_ids = (
            self.train_ids if not k or k >= len(self.train_ids) else _seeded_sample(self.train_ids, k, [cfg.seed, 2])
        )
        # Training rounds, then the novel clients' own rounds where the strategy adapts to them
        # (pFedHN fits their embeddings); otherwise they are only evaluated at the end.
        novel = cfg.sim.novel_rounds if self.novel_ids and adapts_novel_clients else 0
        self.total_rounds = cfg.sim.num_rounds + novel

    def in_novel_phase(self, server_round: int) -> bool:
        return server_round > self.sim.num_rounds

    def sample(self, server_round: int) -> list[int]:
        """This round's clients: from the training clients, or from the novel ones after training."""
        ids = self.novel_ids if self.in_novel_phase(server_round) else self.train_ids
        k = min(self.sim.clients_per_round, len(ids))
        return sorted(int(i) for i in self.rng.choice(ids, size=k, replace=False))

    def evaluated_clients(self, server_round: int) -> list[int]:
        """Whom round ``server_round`` evaluates: nobody, the trained clients, and the novel ones last."""
        if server_round == self.total_rounds:
            return sorted(self.eval_ids + self.novel_ids)
        regular = server_round % self.sim.eval_every == 0 or server_round == self.sim.num_rounds
        return list(self.eval_ids) if regular and not self.in_novel_phase(server_round) else []

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def _seeded_sample(ids: list[int], k: int, seed: list[int]) -> list[int]:
    if not k:
        return []
    return sorted(int(i) for i in np.random.default_rng(seed).choice(ids, size=k, replace=False))


class FaultOrders:
    """Orders a fraction ``faults.fraction`` of each round's trainers to fail as ``faults.kind`` says."""

    def __init__(self, faults: FaultConfig, seed: int, sleep: float) -> None:
        self.faults = faults
        self.rng = np.random.default_rng([seed, 1])
        self.sleep = sleep  # seconds a "timeout" fault sleeps: past the round's timeout

    def orders(self, client_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Config entries for the clients ordered to fail this round (none when the fraction is 0)."""
        n_faulty = int(round(self.faults.fraction * len(client_ids)))
        chosen = self.rng.choice(client_ids, size=n_faulty, replace=False) if n_faulty else []
        return {int(c): {protocol.FAULT: self.faults.kind, protocol.FAULT_SLEEP: self.sleep} for c in chosen}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
