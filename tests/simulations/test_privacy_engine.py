"""One real Flower simulation on Ray with client-level DP on: ε in every row, summary.privacy, the one-line refusal."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedhyper import privacy
from simulations.run import check

REPO = Path(__file__).resolve().parents[2]


def test_a_bad_privacy_option_is_refused_by_the_launchers_check():
    with pytest.raises(ValueError) as err:
        check(["privacy.noise_multiplier=1.0", "privacy.target_epsilon=2.0"])

    assert "give privacy.noise_multiplier or privacy.target_epsilon, not both" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.engine
def test_a_private_pfedhn_simulation_on_ray_accounts_every_round(tmp_path):
    overrides = ["data.num_clients=5", "data.subset=5000", "sim.num_rounds=4", "sim.clients_per_round=3",
                 "sim.eval_every=2", "strategy.local.steps=10", "privacy.noise_multiplier=1.5", "privacy.clip=2.0",
                 "privacy.max_epsilon=1000"]  # fmt: skip
    cmd = [sys.executable, "-m", "simulations.run", *overrides, f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    expected = [privacy.epsilon(1.5, r, 3, 5, 0.2) for r in range(5)]
    assert [r["privacy_epsilon"] for r in rows] == pytest.approx(expected, rel=1e-12)
    assert summary["privacy"]["epsilon"] == pytest.approx(expected[-1], rel=1e-12)
    assert summary["privacy"]["noise_multiplier"] == 1.5 and summary["privacy"]["clip"] == 2.0
    assert summary["privacy"]["rounds"] == 4 and summary["privacy"]["stopped_after_round"] is None
    assert summary["final_accuracy"] is not None
