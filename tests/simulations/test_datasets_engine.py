"""Every strategy and hypernetwork design on CIFAR-10, CIFAR-100 and FEMNIST copies; the command line on them.

The copies are the small hub-schema ones of ``tests/conftest.py`` (``hub_copies``): one seeded
round each in the in-process engine, then ``python -m simulations.run`` as a user runs it.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fedhyper.config import ExperimentConfig
from fedhyper.data import get_spec
from fedhyper.hnet.config import INPUTS, OUTPUTS
from fedhyper.models import ModelConfig, build_model
from simulations.inprocess import run_experiment
from strategies import REGISTRY, experiment, get
from tests.hub_copies import build_copy

REPO = Path(__file__).resolve().parents[2]


def one_round(name: str, dataset: str, root: Path, **hnet) -> ExperimentConfig:
    cfg = ExperimentConfig(strategy=get(name).config_cls())
    cfg.data.name, cfg.data.root, cfg.data.num_clients, cfg.data.cache_dir = dataset, str(root), 3, ""
    cfg.data.partition = "natural" if get_spec(dataset).natural_key else "iid"
    cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every = 1, 3, 1
    cfg.strategy.local.steps = 2
    for key, value in hnet.items():
        setattr(cfg.hnet, key, value)
    return experiment.with_hnet_input(cfg)


def assert_ran(summary) -> None:
    assert summary.rounds == 1 and len(summary.per_client_accuracy) == 3
    assert all(0 <= a <= 1 for a in summary.per_client_accuracy) and math.isfinite(summary.final_accuracy)


def cnn_parameters(dataset: str) -> int:
    spec = get_spec(dataset)
    return sum(p.numel() for p in build_model(ModelConfig(), spec.input_shape, spec.num_classes).parameters())


# CIFAR-10 differs from CIFAR-100 only in its class count; pFedHN runs on it through Flower below.
@pytest.mark.parametrize("dataset", ["cifar100", "femnist"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_strategy_runs_a_round_on_colour_and_62_class_data(name, dataset, hub_copies, tmp_path):
    summary = run_experiment(one_round(name, dataset, hub_copies[dataset]), tmp_path)

    assert summary.strategy == name
    assert_ran(summary)


@pytest.mark.parametrize(
    "hnet",
    [*({"input": i, "output": o} for i in INPUTS for o in OUTPUTS), {"body": "attention", "output": "chunked"},
     {"init": "hyperfan_in"}],
)  # fmt: skip
def test_every_hypernetwork_design_generates_the_colour_cnn(hnet, hub_copies, tmp_path):
    summary = run_experiment(one_round("pfedhn", "cifar100", hub_copies["cifar100"], **hnet), tmp_path)

    assert_ran(summary)
    assert summary.target_parameters == cnn_parameters("cifar100")  # 3 input channels, 100 classes


def run_simulation(run_dir: Path, *overrides: str, timeout: float) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "simulations.run", *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_the_command_exits_2_on_a_copy_of_another_shape_before_any_engine_starts(tmp_path):
    copy = build_copy(get_spec("cifar10"), tmp_path / "gray", per_class=1, shape=(1, 28, 28))  # CIFAR's columns

    result = run_simulation(tmp_path / "run", "data=cifar10", f"data.root={copy}", timeout=120)

    assert result.returncode == 2
    assert result.stderr.startswith(f"config error: data.root={copy}: image 0 is 28x28 with 1 channel(s)")
    assert result.stderr.count("\n") == 1 and "save_to_disk" in result.stderr
    assert not (tmp_path / "run" / ".flwr").exists()  # no engine was started


@pytest.mark.engine
def test_pfedhn_on_a_cifar10_copy_through_flower_and_ray(hub_copies, tmp_path):
    result = run_simulation(
        tmp_path,
        "data=cifar10",
        f"data.root={hub_copies['cifar10']}",
        "data.num_clients=3",
        "sim.num_rounds=2",
        "sim.clients_per_round=3",
        "sim.eval_every=2",
        "strategy.local.steps=5",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["strategy"] == "pfedhn" and summary["rounds"] == 2 and len(summary["per_client_accuracy"]) == 3
    assert summary["target_parameters"] == cnn_parameters("cifar10")
    replies = [json.loads(line) for line in (tmp_path / "clients.jsonl").read_text().splitlines()]
    assert {r["client-id"] for r in replies if r["kind"] == "train"} == {0, 1, 2}
