"""Client-level DP through the launcher: the one-line refusal, and ε in every row of a real Flower/Ray run."""

import pytest

from fedhyper import privacy
from simulations.run import check
from tests.simulations.shared_run import CLIP, NUM_CLIENTS, PER_ROUND, ROUNDS, SIGMA


def test_a_bad_privacy_option_is_refused_by_the_launchers_check():
    with pytest.raises(ValueError) as err:
        check(["privacy.noise_multiplier=1.0", "privacy.target_epsilon=2.0"])

    assert "give privacy.noise_multiplier or privacy.target_epsilon, not both" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.engine
def test_a_private_pfedhn_simulation_on_ray_accounts_every_round(shared_run):
    summary, rows = shared_run.summary, shared_run.rows

    delta = 1 / NUM_CLIENTS  # privacy.delta's default: 1 / the training clients
    expected = [privacy.epsilon(SIGMA, r, PER_ROUND, NUM_CLIENTS, delta) for r in range(ROUNDS + 1)]
    assert [r["privacy_epsilon"] for r in rows] == pytest.approx(expected, rel=1e-12)
    assert summary["privacy"]["epsilon"] == pytest.approx(expected[-1], rel=1e-12)
    assert summary["privacy"]["noise_multiplier"] == SIGMA and summary["privacy"]["clip"] == CLIP
    assert summary["privacy"]["rounds"] == ROUNDS and summary["privacy"]["stopped_after_round"] is None
    assert summary["final_accuracy"] is not None
