"""Privacy in the round loop: ε after every round, the stop at privacy.max_epsilon, resume, the shared-model path."""

import json
import math

import pytest

from fedhyper import checkpoint, privacy, record
from fedhyper.config import ExperimentConfig
from strategies import experiment, fedavg, pfedhn
from strategies.app import run
from strategies.fedhyper import FedHyperConfig


def config(strategy=None, **options) -> ExperimentConfig:
    cfg = ExperimentConfig(strategy=strategy or pfedhn.PFedHNConfig())
    cfg.data.num_clients, cfg.data.subset = 4, 2000
    cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every, cfg.sim.checkpoint_every = 6, 2, 3, 2
    cfg.strategy.local.steps = 3
    cfg.privacy.noise_multiplier, cfg.privacy.clip, cfg.privacy.noise_seed = 2.0, 0.5, 11
    for key, value in options.items():
        setattr(cfg.privacy, key, value)
    return cfg


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / record.METRICS_FILE).read_text().splitlines()]


def test_training_stops_before_the_round_that_would_pass_max_epsilon(in_process_grid, tmp_path):
    mech = privacy.mechanism(config())
    budget = (mech.epsilon(3) + mech.epsilon(4)) / 2  # three rounds fit, the fourth would pass it
    cfg = config(max_epsilon=budget)

    summary = run(in_process_grid(4), experiment.Experiment(cfg, tmp_path, True))

    written = rows(tmp_path)
    assert [r[record.ROUND] for r in written] == [0, 1, 2, 3]
    assert [r[record.PRIVACY_EPSILON] for r in written] == [0.0, *(mech.epsilon(r) for r in (1, 2, 3))]
    assert record.ACCURACY in written[-1]  # the last trained round is the final evaluation
    assert summary.privacy["rounds"] == 3 and summary.privacy["stopped_after_round"] == 3
    assert summary.privacy["epsilon"] == mech.epsilon(3) <= budget
    assert summary.privacy["population"] == 4 and summary.privacy["sample_size"] == 2
    assert summary.privacy["delta"] == 0.25 and "replace-one" in summary.privacy["accounting"]


def test_a_resumed_private_run_reports_the_same_epsilon_as_an_uninterrupted_one(
    in_process_grid, crashing_grid, tmp_path
):
    whole = run(in_process_grid(4), experiment.Experiment(config(), tmp_path / "whole", True))

    grid = crashing_grid(4, call=8)  # discovery, round-0 eval, rounds 1-4 (an evaluation at 3), round 5's train
    with pytest.raises(RuntimeError, match="the machine died"):
        run(grid, experiment.Experiment(config(), tmp_path / "split", True))
    saved = checkpoint.load_checkpoint(tmp_path / "split" / checkpoint.FILENAME)
    assert saved["round"] == 4 and saved["privacy"]["rounds"] == 4
    resumed = run(in_process_grid(4, node_offset=5000),
                  experiment.Experiment(config(), tmp_path / "split", True, resume=True))  # fmt: skip

    assert resumed.privacy == whole.privacy and whole.privacy["rounds"] == 6
    assert [r[record.PRIVACY_EPSILON] for r in rows(tmp_path / "split")] == [
        r[record.PRIVACY_EPSILON] for r in rows(tmp_path / "whole")
    ]
    assert resumed.per_client_accuracy == whole.per_client_accuracy  # the noise generator resumed too


def test_the_shared_model_path_clips_and_noises_the_mean_and_accounts_it(in_process_grid, tmp_path):
    cfg = config(fedavg.FedAvgConfig(), noise_multiplier=None, target_epsilon=8.0)
    cfg.sim.num_rounds, cfg.sim.checkpoint_every = 3, 0

    summary = run(in_process_grid(4), experiment.Experiment(cfg, tmp_path, True))

    sigma = privacy.calibrate(8.0, 0.25, 3, 2, 4)
    assert summary.privacy["noise_multiplier"] == sigma
    assert summary.privacy["epsilon"] == pytest.approx(8.0, rel=0.01) and summary.privacy["epsilon"] <= 8.0
    assert [r[record.PRIVACY_EPSILON] for r in rows(tmp_path)][-1] == summary.privacy["epsilon"]


def test_fedhyper_clips_and_noises_each_of_its_outer_steps_and_accounts_the_rounds(in_process_grid, tmp_path):
    def fedhyper_run(name: str, **options):
        # a round of 2 clients is two outer steps; privacy needs the generated model alone
        strategy = FedHyperConfig(clients_per_step=1, adapt_steps=2, shared_model=False)
        cfg = config(strategy, **options)
        cfg.sim.num_rounds, cfg.sim.checkpoint_every = 4, 0
        # Below FedHyper's tuned rates (local 0.06, Adam 1.8e-3): at those, on 4 tiny clients, the clients' own
        # steps and adaptation decide every prediction and C's bite on Φ does not show in the accuracies.
        cfg.strategy.local.lr, cfg.strategy.outer.lr = 5e-3, 1e-3
        cfg.strategy.outer.weighting = "uniform"  # as privacy weighs clients: the plain run differs by the path alone
        return run(in_process_grid(4), experiment.Experiment(cfg, tmp_path / name, True))

    plain = fedhyper_run("plain", noise_multiplier=None)
    inert = fedhyper_run("inert", noise_multiplier=0.0, clip=math.inf)  # clipping that never bites, no noise
    clipped = fedhyper_run("clipped", noise_multiplier=0.0, clip=1e-4)
    private = fedhyper_run("private")  # σ 2, C 0.5

    assert inert.per_client_accuracy == plain.per_client_accuracy  # the private path changes nothing by itself
    assert clipped.per_client_accuracy != plain.per_client_accuracy  # ... and C bites (the comparison can fail)
    assert private.per_client_accuracy not in (plain.per_client_accuracy, clipped.per_client_accuracy)
    mech = privacy.mechanism(config(FedHyperConfig()))
    assert [r[record.PRIVACY_EPSILON] for r in rows(tmp_path / "private")] == [mech.epsilon(r) for r in range(5)]
    assert private.privacy["epsilon"] == mech.epsilon(4) and private.privacy["rounds"] == 4
