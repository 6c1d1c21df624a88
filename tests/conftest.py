"""Shared fixtures: small real data, tiny configs and hypernetworks, fake Flower replies, the in-process grid.

Tests that start a real Flower/Ray engine are marked ``engine``: ``pytest -m "not engine"`` is the
quick loop. The engine tests of tests/simulations share one simulation (its conftest.py).
"""

from __future__ import annotations

import gzip
import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Message, MetricRecord, RecordDict
from omegaconf import OmegaConf

from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from fedhyper.data import cache, get_spec
from fedhyper.hypernet import HyperNetConfig, HyperNetwork
from tests.hub_copies import build_copy

# A run of seconds in the in-process engine: 4 clients on 2,000 Fashion-MNIST examples, 2 rounds of 2 clients.
TINY_RUN = ("data.num_clients=4", "data.subset=2000", "sim.num_rounds=2", "sim.clients_per_round=2",
            "sim.eval_every=1", "strategy.local.steps=5")  # fmt: skip
# Strategies that count steps of their own beside strategy.local.steps: as many as it, whatever a test sets it
# to (their defaults, 50, would make a tiny run ten times as long).
TINY_OWN_STEPS = {
    "ditto": ("strategy.personal_steps=${strategy.local.steps}",),
    "fedrep": ("strategy.head_steps=${strategy.local.steps}",),
    "fedhyper": ("strategy.adapt_steps=${strategy.local.steps}",),  # its adaptation before each evaluation
}


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzip IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A folder of Fashion-MNIST-shaped IDX files with 200 random images, 20 per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 160), ("t10k", 40)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


@pytest.fixture(scope="session")
def fmnist_available() -> bool:
    return get_spec("fmnist").idx_dir.is_dir()


@pytest.fixture(scope="session")
def hub_copies(tmp_path_factory) -> dict[str, Path]:
    """Small save_to_disk copies in the hub's schemas (CIFAR-10, CIFAR-100, FEMNIST with 12 writers), built once."""
    root = tmp_path_factory.mktemp("hub")
    return {
        "cifar10": build_copy(get_spec("cifar10"), root / "cifar10", per_class=24),
        "cifar100": build_copy(get_spec("cifar100"), root / "cifar100", per_class=4),
        "femnist": build_copy(get_spec("femnist"), root / "femnist", per_class=4, owners=12),
    }


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """One torch thread in each test process and in the processes tests start. pytest-xdist runs a worker per
    core and one more (.ci/run), and torch's default, a thread per core in every one of them, oversubscribes
    the cores: OpenMP's threads then wait on each other and a small CNN trains tens of times slower (measured:
    20 steps 0.24 s on one thread, 8.1 s on two beside busy cores). The launched processes set their own counts
    (the ServerApp's sim.server_threads, a client's one thread); OMP_NUM_THREADS sets the default of the rest."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _partition_cache(tmp_path_factory) -> None:
    """Partitions cached for this session only (subprocesses inherit it), never in ~/.cache."""
    os.environ[cache.ENV_DIR] = str(tmp_path_factory.mktemp("partitions"))


@pytest.fixture(scope="session", autouse=True)
def _absl_writes_to_the_real_stderr() -> None:
    """absl's log handler (dp-accounting imports absl, lazily, inside a test) keeps the sys.stderr of the
    moment it is made: pytest's capture. A later ``logging.config.dictConfig`` (Hydra's, test_multirun)
    closes every handler's stream that is not the current sys.stderr/stdout, so it closed pytest's
    capture and the session died ("lost sys.stderr"). On the process's own stderr it closes nothing."""
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def in_process_grid():
    from simulations.inprocess import InProcessGrid  # the engine itself; imported late, it loads the apps

    return InProcessGrid


@pytest.fixture
def crashing_grid(in_process_grid):
    """``crashing_grid(num_clients, call)``: an in-process grid whose ``call``-th exchange raises
    ``RuntimeError("the machine died")``, as a run killed there would stop. Exchange 1 is the
    discovery, 2 the round-0 evaluation, then a round's train and (when it evaluates) evaluation."""

    def build(num_clients: int, call: int):
        grid = in_process_grid(num_clients)
        real, calls = grid.send_and_receive, itertools.count(1)

        def send_and_receive(messages, *, timeout=None):
            if next(calls) == call:
                raise RuntimeError("the machine died")
            return real(messages, timeout=timeout)

        grid.send_and_receive = send_and_receive
        return grid

    return build


@pytest.fixture
def tiny_config():
    """``tiny_config(strategy="pfedhn", *overrides)``: TINY_RUN's typed config, ``key=value`` overrides on top."""
    from strategies import experiment  # imports every registered strategy

    def build(strategy: str = "pfedhn", *overrides: str) -> ExperimentConfig:
        return experiment.typed(
            OmegaConf.from_dotlist(
                [f"strategy.name={strategy}", *TINY_RUN, *TINY_OWN_STEPS.get(strategy, ()), *overrides]
            )
        )

    return build


@pytest.fixture
def tiny_hnet():
    """``tiny_hnet(shapes=None, num_clients=4, **options)``: a small seeded hypernetwork for ``shapes``.

    Without ``shapes`` it generates a 3x2 weight and a bias of 3; ``options`` are HyperNetConfig's,
    by default a 2-dimensional embedding and one hidden layer of 5.
    """

    def build(shapes: dict[str, torch.Size] | None = None, num_clients: int = 4, **options) -> HyperNetwork:
        shapes = shapes or {"w": torch.Size([3, 2]), "b": torch.Size([3])}
        torch.manual_seed(0)
        return HyperNetwork(shapes, num_clients, HyperNetConfig(**{"embedding_dim": 2, "hidden_dim": 5, "n_hidden": 1,
                                                                   **options}))  # fmt: skip

    return build


@pytest.fixture
def evaluation_metrics():
    """``evaluation_metrics(client_id, examples, accuracy, val_examples, val_accuracy)``: a fake client's
    evaluation figures, as the metrics record of its reply holds them (losses: 1 - accuracy)."""

    def build(client_id: int, examples: int, accuracy: float, val_examples: int, val_accuracy: float) -> dict:
        return {
            protocol.CLIENT_ID: client_id,
            protocol.NUM_EXAMPLES: examples,
            protocol.EVAL_LOSS: 1.0 - accuracy,
            protocol.EVAL_ACCURACY: accuracy,
            protocol.NUM_VAL_EXAMPLES: val_examples,
            protocol.VAL_LOSS: 1.0 - val_accuracy,
            protocol.VAL_ACCURACY: val_accuracy,
        }

    return build


@pytest.fixture
def fake_reply():
    """``fake_reply(asked, metrics)``: the reply a client would send to message ``asked``, holding ``metrics``."""

    def build(asked: Message, metrics: dict) -> Message:
        return Message(RecordDict({protocol.METRICS: MetricRecord(metrics)}), reply_to=asked)

    return build
