"""``python -m simulations.run --multirun``: one record per job, failed jobs reported, sweepers optimise validation."""

import json
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from simulations import multirun
from simulations import run as run_module
from simulations.inprocess import run_experiment
from strategies import experiment

TINY = ["data.num_clients=3", "data.subset=600", "data.partition=iid", "sim.num_rounds=2", "sim.clients_per_round=3",
        "sim.eval_every=2", "strategy.local.steps=2"]  # fmt: skip


def in_process_launch(fail: str):
    """Stands in for the Flower launch: the same run in this process; runs of strategy ``fail`` exit 1 as flwr would."""

    def run_app(spec, run_config, head):
        assert head is None  # a sweep's jobs start their own Ray, none before the config
        cfg = experiment.typed(OmegaConf.load(run_config[experiment.RUN_CONFIG_FILE]))
        if cfg.strategy.name == fail:
            return 1
        run_experiment(cfg, spec.run_dir)
        return 0

    return run_app


@pytest.fixture
def launch(monkeypatch):
    monkeypatch.setattr(multirun, "FAILED", multirun.FailedJobs())

    def command(*argv: str, fail: str = "") -> int:
        monkeypatch.setattr(run_module, "run_app", in_process_launch(fail))
        monkeypatch.setattr(sys, "argv", ["simulations.run", *argv])
        try:
            run_module.cli()
        except SystemExit as exit_:
            return int(exit_.code or 0)
        return 0

    return command


def test_a_sweep_writes_one_record_per_job_and_goes_on_past_a_failed_job(launch, tmp_path, capsys):
    code = launch("-m", "strategy=fedavg,fedprox,local", *TINY, f"hydra.sweep.dir={tmp_path}", fail="fedprox")

    assert code == 1
    err = capsys.readouterr().err
    assert "1 jobs of the sweep failed" in err and "strategy=fedprox" in err
    summaries = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")}
    assert {s["strategy"] for s in summaries.values()} == {"fedavg", "local"}  # the job after the failure ran
    assert set(summaries) == {"0", "2"}
    for job, summary in summaries.items():
        assert OmegaConf.load(tmp_path / job / "config.yaml").strategy.name == summary["strategy"]


def test_a_bad_value_anywhere_in_a_sweep_stops_it_before_any_job(launch, tmp_path, capsys):
    code = launch("-m", "strategy=fedavg,nosuch", *TINY, f"hydra.sweep.dir={tmp_path}")

    assert code == 2
    assert "strategy='nosuch' is unknown" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_optuna_maximises_the_validation_accuracy_the_runs_return(launch, tmp_path):
    code = launch("-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=0",
                  "strategy=fedavg", "strategy.local.lr=tag(log, interval(1e-3, 1e-1))", *TINY,
                  f"hydra.sweep.dir={tmp_path}")  # fmt: skip

    assert code == 0
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    trials = [json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")]
    assert len(trials) == 3
    assert best["best_value"] == max(t["val_accuracy"] for t in trials)
    best_lrs = [OmegaConf.load(p.parent / "config.yaml").strategy.local.lr for p in tmp_path.glob("*/summary.json")
                if json.loads(p.read_text())["val_accuracy"] == best["best_value"]]  # fmt: skip
    assert any(lr == pytest.approx(best["best_params"]["strategy.local.lr"]) for lr in best_lrs)
