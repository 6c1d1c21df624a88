"""Every strategy and hypernetwork design on colour and 62-class data; the command line on other shapes.

The copies are the small hub-schema ones of ``tests/conftest.py`` (``hub_copies``): one seeded
round each in the in-process engine, then ``python -m simulations.run`` as a user runs it, and
the CIFAR-10 copy through Flower and Ray (the shared simulation, tests/simulations/shared_run.py).
"""

import math
from pathlib import Path

import pytest

from fedhyper.config import ExperimentConfig
from fedhyper.data import get_spec
from fedhyper.models import ModelConfig, build_model, head_names
from simulations.inprocess import run_experiment
from strategies import experiment
from strategies.registry import REGISTRY, get
from tests.hub_copies import build_copy
from tests.launcher import run_simulation
from tests.simulations.shared_run import NUM_CLIENTS, ROUNDS


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


def cnn(dataset: str):
    spec = get_spec(dataset)
    return build_model(ModelConfig(), spec.input_shape, spec.num_classes)


def cnn_parameters(dataset: str) -> int:
    return sum(p.numel() for p in cnn(dataset).parameters())


# Every strategy on one colour shape with many classes (CIFAR-100; CIFAR-10 differs only in its class
# count and runs on Flower below). FEMNIST's natural partition is the data's, not a strategy's: one strategy.
@pytest.mark.parametrize(("name", "dataset"), [*((n, "cifar100") for n in sorted(REGISTRY)), ("pfedhn", "femnist")])
def test_every_strategy_runs_a_round_on_colour_and_62_class_data(name, dataset, hub_copies, tmp_path):
    summary = run_experiment(one_round(name, dataset, hub_copies[dataset]), tmp_path)

    assert summary.strategy == name
    assert_ran(summary)


# Each input and each output once, the attention body, hyperfan-in: inputs and outputs compose
# independently, and their every pairing is tested on a small target in tests/fedhyper/test_hnet_design.py.
@pytest.mark.parametrize(
    "hnet",
    [{"input": "embedding", "output": "per_tensor"}, {"input": "data", "output": "chunked"},
     {"input": "noise", "output": "component"}, {"body": "attention", "output": "chunked"}, {"init": "hyperfan_in"}],
)  # fmt: skip
def test_every_hypernetwork_design_generates_the_colour_cnn(hnet, hub_copies, tmp_path):
    summary = run_experiment(one_round("pfedhn", "cifar100", hub_copies["cifar100"], **hnet), tmp_path)

    assert_ran(summary)
    assert summary.target_parameters == cnn_parameters("cifar100")  # 3 input channels, 100 classes


def test_the_command_exits_2_on_a_copy_of_another_shape_before_any_engine_starts(tmp_path):
    copy = build_copy(get_spec("cifar10"), tmp_path / "gray", per_class=1, shape=(1, 28, 28))  # CIFAR's columns

    result = run_simulation(tmp_path / "run", "data=cifar10", f"data.root={copy}", timeout=120)

    assert result.returncode == 2
    assert result.stderr.startswith(f"config error: data.root={copy}: image 0 is 28x28 with 1 channel(s)")
    assert result.stderr.count("\n") == 1 and "save_to_disk" in result.stderr
    assert not (tmp_path / "run" / ".flwr").exists()  # no engine was started


@pytest.mark.engine
def test_pfedhn_on_a_cifar10_copy_through_flower_and_ray(shared_run):
    summary = shared_run.summary

    assert summary["strategy"] == "pfedhn_pc" and summary["rounds"] == ROUNDS
    assert len(summary["per_client_accuracy"]) == NUM_CLIENTS
    # pFedHN-PC generates the CNN for 3 input channels and 10 classes, all but the head its clients keep.
    model = cnn("cifar10")
    head = sum(p.numel() for n, p in model.named_parameters() if n in head_names(model))
    assert summary["target_parameters"] == cnn_parameters("cifar10") - head
    assert len({r["client-id"] for r in shared_run.replies if r["kind"] == "train"}) >= 3
