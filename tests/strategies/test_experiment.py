import pytest
from omegaconf import OmegaConf

from fedhyper.config import ExperimentConfig
from simulations import compare
from strategies import experiment, registry
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


def recorded_without(run_dir, strategy: str, option: str = "outer.weighting"):
    """A finished run of ``strategy`` whose config.yaml predates ``strategy.<option>``."""
    run_dir.mkdir(parents=True)
    raw = OmegaConf.to_container(OmegaConf.structured(ExperimentConfig(strategy=registry.get(strategy).config_cls())))
    *sections, key = ["strategy", *option.split(".")]
    section = raw
    for name in sections:
        section = section[name]
    del section[key]
    OmegaConf.save(OmegaConf.create(raw), run_dir / "config.yaml")
    (run_dir / "summary.json").write_text("{}")
    return run_dir


def test_a_config_recorded_before_an_option_reads_as_what_runs_did_then_not_todays_default(tmp_path):
    before = recorded_without(tmp_path / "pfedhn", "pfedhn")

    assert PFedHNConfig().outer.weighting == "uniform"  # today's default, different from what the run did
    assert experiment.typed(experiment.recorded(before / "config.yaml")).strategy.outer.weighting == "examples"
    assert experiment.typed(OmegaConf.load(before / "config.yaml")).strategy.outer.weighting == "uniform"
    fedavg = tmp_path / "fedavg.yaml"  # a strategy without the section gains no option
    OmegaConf.save(OmegaConf.structured(ExperimentConfig(strategy=registry.get("fedavg").config_cls())), fedavg)
    assert experiment.typed(experiment.recorded(fedavg)) == ExperimentConfig(
        strategy=registry.get("fedavg").config_cls()
    )


def test_an_option_only_some_strategies_have_is_filled_in_only_for_those(tmp_path, monkeypatch):
    monkeypatch.setitem(experiment.VALUES_BEFORE_OPTION, "strategy.base", True)
    for strategy in ("fedhyper", "fedavg"):
        config = ExperimentConfig(strategy=registry.get(strategy).config_cls())
        raw = OmegaConf.to_container(OmegaConf.structured(config))
        raw["strategy"].pop("base", None)  # as written before strategy.base existed
        OmegaConf.save(OmegaConf.create(raw), tmp_path / f"{strategy}.yaml")

    assert experiment.typed(experiment.recorded(tmp_path / "fedhyper.yaml")).strategy.base is True
    assert "base" not in experiment.recorded(tmp_path / "fedavg.yaml").strategy  # FedAvg's schema has no such key
    experiment.typed(experiment.recorded(tmp_path / "fedavg.yaml"))


@pytest.mark.parametrize(
    ("strategy", "option", "reused"),
    [
        ("pfedhn", "outer.weighting", False),  # examples before the option, uniform by default now: run again
        ("fedhyper", "outer.weighting", True),  # examples then and now: the older run is the same run
        ("pfedhn", "outer.schedule", True),  # a constant learning rate then and now
        ("fedhyper", "outer.schedule", False),  # constant then, FedHyper's cosine now
        ("fedhyper", "base", False),  # no base then, FedHyper's shared base now
        ("fedhyper", "embedding_dim", False),  # hnet's size then, the tuned 64 now
        ("fedhyper", "shared_model", False),  # the generated model alone then, FedAvg's model beside it now
        ("fedavg_ft", "local.lr_schedule", True),  # a constant local lr then and now
    ],
)
def test_a_grid_reuses_an_older_run_only_if_it_ran_as_todays_default_would(tmp_path, strategy, option, reused):
    older = recorded_without(tmp_path / "seed0-0123456789", strategy, option)
    today = OmegaConf.to_container(OmegaConf.structured(ExperimentConfig(strategy=registry.get(strategy).config_cls())))
    wanted = tmp_path / f"seed0-{compare.config_digest(today, 'inprocess')}"

    assert compare.finished_twin(wanted, today) == (older if reused else wanted)
