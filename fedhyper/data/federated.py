"""One federated dataset per process: pooled tensors plus every client's row indices.

A simulated client process serves many clients; they all index the same tensors, so a
client's share costs its index arrays and nothing more, and the whole thing is built once
per process (``load_federated`` is cached on its arguments). The partition itself is
computed once per machine and read from disk by every later process
(``fedhyper.data.cache``); a client's train / val / test cut is made when it is asked for.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from fedhyper.data.cache import cache_dir, cached_partition
from fedhyper.data.hub import load_pooled
from fedhyper.data.partition import PARTITIONS, ClientRows, ClientSplit, split_client
from fedhyper.data.specs import SPECS, get_spec, standardise


@dataclass
class DataConfig:
    """Which dataset, how it is split among clients, and each client's own split."""

    name: str = "fmnist"  # the dataset (fedhyper.data.specs); data=<name> selects it
    # A folder holding a save_to_disk copy or the hub's parquet files (Fashion-MNIST: or its IDX
    # files); nothing is downloaded then. None: Fashion-MNIST's Debian package, else the hub.
    root: str | None = None
    num_clients: int = 50  # clients, one simulated SuperNode each; natural: a seeded sample of owners
    partition: str = "pathological"  # pathological | dirichlet | iid | natural (one writer a client: femnist)
    classes_per_client: int = 2  # pathological: pFedHN's split gives each client two classes
    alpha: float = 0.3  # dirichlet concentration; smaller is more heterogeneous
    val_fraction: float = 0.1  # share of each client's own data held out for validation
    test_fraction: float = 0.2  # share of each client's own data held out for its test accuracy
    subset: int | None = None  # use only the first N pooled examples (tests, quick trials)
    # Where partitions are cached; None: $FEDHYPER_CACHE_DIR or ~/.cache/fedhyper; "": no cache.
    cache_dir: str | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first option that cannot work."""
        spec = get_spec(self.name)
        if self.partition not in PARTITIONS:
            raise ValueError(f"data.partition={self.partition!r} is unknown; choose one of {', '.join(PARTITIONS)}")
        if self.partition == "natural" and spec.natural_key is None:
            natural = [s.name for s in SPECS.values() if s.natural_key]
            raise ValueError(
                f"data.partition=natural needs examples that name their owner, which data={self.name} lacks; "
                f"use it with data={' or data='.join(natural)}"
            )
        if self.root is not None and not Path(self.root).expanduser().is_dir():
            raise ValueError(f"data.root={self.root} is not a directory; {spec.how_to_get(self.root)}")
        if self.num_clients < 1:
            raise ValueError(f"data.num_clients={self.num_clients} must be at least 1")
        if self.alpha <= 0:
            raise ValueError(f"data.alpha={self.alpha} must be positive")
        if not (self.val_fraction >= 0 and self.test_fraction > 0 and self.val_fraction + self.test_fraction < 1):
            raise ValueError(
                f"data.val_fraction={self.val_fraction} and data.test_fraction={self.test_fraction} "
                "must be >= 0 and > 0 and sum to less than 1"
            )


@dataclass(frozen=True)
class ClientData:
    """A client's examples as tensors; views are gathered on demand from the pooled data."""

    x_train: torch.Tensor  # [n_train, C, H, W]
    y_train: torch.Tensor  # [n_train]
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    @property
    def classes(self) -> list[int]:
        return sorted(torch.unique(torch.cat([self.y_train, self.y_test])).tolist())


class FederatedDataset:
    """Pooled, standardised images and every client's rows of one partitioning."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, parts: ClientRows, val_fraction: float,
        test_fraction: float, seed: int, num_classes: int,
    ) -> None:  # fmt: skip
        self.images = images  # [N, C, H, W] float32, standardised
        self.labels = labels  # [N] int64
        self.parts = parts
        self.fractions = (val_fraction, test_fraction)
        self.seed = seed
        self.num_classes = num_classes  # the dataset's, even when a subset lacks some classes

    def __len__(self) -> int:
        return len(self.parts)

    def split(self, cid: int) -> ClientSplit:
        """Client ``cid``'s train / val / test rows (a seeded shuffle of its own rows only)."""
        if not 0 <= cid < len(self.parts):
            raise ValueError(f"client id {cid} is outside 0..{len(self.parts) - 1}")
        return split_client(self.parts[cid], *self.fractions, self.seed * 100_003 + cid)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def label_counts(self) -> np.ndarray:
        """Each client's training examples per class: [clients, classes]."""
        labels = self.labels.numpy()
        return np.stack(
            [np.bincount(labels[self.split(c).train], minlength=self.num_classes) for c in range(len(self))]
        )

    def client(self, cid: int) -> ClientData:
        s = self.split(cid)
        pick = lambda rows: (self.images[rows], self.labels[rows])  # noqa: E731
        (xt, yt), (xv, yv), (xs, ys) = pick(s.train), pick(s.val), pick(s.test)
        return ClientData(x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys)


def load_federated(cfg: DataConfig, seed: int) -> FederatedDataset:
    """Load, standardise and partition the dataset ``cfg`` names; cached per process."""
    return _load_cached(tuple(sorted(asdict(cfg).items())), seed)


@functools.lru_cache(maxsize=2)
def _load_cached(key: tuple, seed: int) -> FederatedDataset:
    cfg = DataConfig(**dict(key))
    cfg.validate()
    spec = get_spec(cfg.name)
    pooled = load_pooled(spec, cfg.root, cache_dir(cfg.cache_dir))
    images, labels, owners = pooled.images, pooled.labels, pooled.groups
    if cfg.subset:
        images, labels = images[: cfg.subset], labels[: cfg.subset]
        owners = None if owners is None else owners[: cfg.subset]
    x = standardise(torch.from_numpy(images).float().div_(255.0), spec)  # [N, C, H, W]
    parts = cached_partition(
        labels, cfg.num_clients, cfg.partition, cfg.classes_per_client, cfg.alpha, seed, cache_dir(cfg.cache_dir),
        owners,
    )  # fmt: skip
    fractions = (cfg.val_fraction, cfg.test_fraction)
    return FederatedDataset(x, torch.from_numpy(labels), parts, *fractions, seed, spec.num_classes)


def dataset_info(name: str) -> tuple[tuple[int, int, int], int]:
    """Input shape (C, H, W) and class count of a dataset, known without loading it."""
    spec = get_spec(name)
    return spec.input_shape, spec.num_classes
