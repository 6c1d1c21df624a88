import pytest
from omegaconf import OmegaConf

from fedhyper.config import ExperimentConfig
from strategies import experiment
from strategies.pfedhn import PFedHNConfig


def test_bare_flwr_run_uses_defaults_plus_overrides_and_adopts_the_federation_size(tmp_path):
    exp = experiment.load({"overrides": "sim.num_rounds=7 strategy.local.lr=0.1", "run-dir": str(tmp_path)})

    assert isinstance(exp.cfg.strategy, PFedHNConfig)
    assert exp.cfg.sim.num_rounds == 7 and exp.cfg.strategy.local.lr == 0.1
    assert exp.cfg.strategy.outer.lr == 1e-2  # untouched defaults stay pFedHN's
    assert exp.run_dir == tmp_path and not exp.fixed_num_clients


def test_a_launcher_config_file_is_loaded_typed(tmp_path):
    cfg = ExperimentConfig(strategy=PFedHNConfig())
    cfg.data.num_clients, cfg.seed = 12, 5
    path = tmp_path / "config.yaml"
    OmegaConf.save(OmegaConf.structured(cfg), path)

    exp = experiment.load({"config-file": str(path), "run-dir": str(tmp_path)})

    assert exp.cfg == cfg and exp.fixed_num_clients


def test_unknown_strategy_in_overrides_lists_the_registered_ones():
    with pytest.raises(ValueError, match="choose one of ditto, fedavg, .*pfedhn, pfedhn_pc, pfedla, pfedme"):
        experiment.load({"overrides": "strategy=magic"})
