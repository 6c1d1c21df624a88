"""Shared fixtures: small real data, tiny hypernetworks, fake Flower replies, the in-process grid."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fedhyper.data import cache, get_spec
from tests.hub_copies import build_copy


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
def _partition_cache(tmp_path_factory) -> None:
    """Partitions cached for this session only (subprocesses inherit it), never in ~/.cache."""
    os.environ[cache.ENV_DIR] = str(tmp_path_factory.mktemp("partitions"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def in_process_grid():
    from simulations.inprocess import InProcessGrid  # the engine itself; imported late, it loads the apps

    return InProcessGrid
