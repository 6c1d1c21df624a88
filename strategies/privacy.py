"""Privacy accounting in the round loop: ε after every round, and the stop at ``privacy.max_epsilon``.

The mechanism itself lives where the server's update is computed (``fedhyper.privacy``: the
hypernetwork's outer step and the shared-model mean); this callback counts each training round
as one release in Flower's accountant (``fedhyper.privacy.Accountant``), writes ε into the round's
row of metrics.jsonl, ends training before the round that would pass the budget, and goes into
the checkpoint so that a resumed run goes on from the same ε.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fedhyper import record
from fedhyper.privacy import Accountant, Mechanism
from strategies.exchange import RoundMetrics

log = logging.getLogger("fedhyper")


class PrivacyBudget:
    """The run's accountant as a round-loop callback and a stop rule."""

    def __init__(self, mech: Mechanism, training_rounds: int) -> None:
        self.accountant = Accountant(mech)
        self.training_rounds = training_rounds  # rounds after these (novel clients' own) release nothing of Φ
        self.stopped_after: int | None = None
        log.info("privacy: σ=%.4g, C=%.4g, δ=%.3g, %d of %d clients a round; ε after all %d rounds: %.4g",
                 mech.noise_multiplier, mech.clip, mech.delta, mech.sample_size, mech.population, training_rounds,
                 mech.epsilon(training_rounds))  # fmt: skip

    def last_round(self, server_round: int) -> bool:
        """Count round ``server_round``'s release (a training round); True if the next would pass the budget.

        Called by the loop after the round's training and before its evaluation, so that a stopped
        run's last trained round is also its final evaluation.
        """
        if 1 <= server_round <= self.training_rounds:
            self.accountant.spend()
        if server_round >= self.training_rounds or not self.accountant.would_exceed():
            return False
        mech, spent = self.accountant.mech, self.accountant.rounds
        log.warning("privacy: training stops after round %d: round %d would spend ε=%.4g > privacy.max_epsilon=%.4g",
                    server_round, server_round + 1, mech.epsilon(spent + 1), mech.max_epsilon)  # fmt: skip
        self.stopped_after = server_round
        return True

    def after_round(self, server_round: int, metrics: RoundMetrics) -> None:
        eps = self.accountant.epsilon
        metrics.values[record.PRIVACY_EPSILON] = None if math.isinf(eps) else eps

    def after_run(self) -> None:
        pass

    def report(self) -> dict[str, Any]:
        """summary.json's ``privacy`` object, with the round training stopped after (None: it did not)."""
        return {**self.accountant.report(), "stopped_after_round": self.stopped_after}

    def state_dict(self) -> dict[str, Any]:
        return self.accountant.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.load_state_dict(state)
