"""Every registered strategy, end to end on the real ClientApp, in a tiny seeded simulation."""

import pytest

from fedhyper.config import ExperimentConfig
from strategies import REGISTRY, experiment, get
from strategies.app import run

NAMES = sorted(REGISTRY)


def tiny(name: str) -> ExperimentConfig:
    cfg = ExperimentConfig(strategy=get(name).config_cls())
    cfg.data.num_clients, cfg.data.subset = 4, 3000
    cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every = 4, 4, 4
    cfg.strategy.local.steps = 25
    return cfg


def test_the_registry_holds_every_public_name():
    assert set(NAMES) == {
        "local", "fedavg", "fedavg_ft", "fedprox", "fedper", "fedrep", "lg_fedavg",
        "ditto", "perfedavg", "pfedme", "pfedla", "pfedhn", "pfedhn_pc",
    }  # fmt: skip


def test_an_unknown_name_fails_with_the_known_ones():
    with pytest.raises(ValueError, match="fedavg, fedavg_ft"):
        get("fedsgd")


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_improves_on_its_round_zero_accuracy(name, in_process_grid, tmp_path):
    cfg = tiny(name)
    grid = in_process_grid(cfg.data.num_clients)

    summary = run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    assert summary["strategy"] == name
    assert summary["rounds"] == cfg.sim.num_rounds
    assert summary["final_accuracy"] > summary["initial_accuracy"] + 0.05, summary
