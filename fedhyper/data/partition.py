"""Client partitions: flwr-datasets partitioners over labels held in memory.

Only the label column goes through ``datasets``; the partitioners return which rows each
client owns, and the images stay in one NumPy array shared by every client of a process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasets import Dataset
from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, PathologicalPartitioner

PARTITIONS = ("pathological", "dirichlet", "iid")


@dataclass(frozen=True)
class ClientSplit:
    """Row indices into the pooled dataset of one client's train / val / test examples."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _partitioner(partition: str, num_clients: int, classes_per_client: int, alpha: float, seed: int):
    if partition == "pathological":
        # "first-deterministic" gives every class to at least one client, as pFedHN's split does.
        return PathologicalPartitioner(
            num_partitions=num_clients,
            partition_by="label",
            num_classes_per_partition=classes_per_client,
            class_assignment_mode="first-deterministic",
            seed=seed,
        )
    if partition == "dirichlet":
        return DirichletPartitioner(
            num_partitions=num_clients, partition_by="label", alpha=alpha, min_partition_size=0, seed=seed
        )
    if partition == "iid":
        return IidPartitioner(num_partitions=num_clients)
    raise ValueError(f"data.partition={partition!r} is unknown; choose one of {', '.join(PARTITIONS)}")


def partition_indices(
    labels: np.ndarray,
    num_clients: int,
    partition: str = "pathological",
    classes_per_client: int = 2,
    alpha: float = 0.3,
    seed: int = 0,
) -> list[np.ndarray]:
    """Split row indices of ``labels`` among ``num_clients``; the same for the same seed."""
    table = Dataset.from_dict({"label": labels, "row": np.arange(len(labels))})
    partitioner = _partitioner(partition, num_clients, classes_per_client, alpha, seed)
    partitioner.dataset = table
    return [np.asarray(partitioner.load_partition(i)["row"], dtype=np.int64) for i in range(num_clients)]


def split_client(rows: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> ClientSplit:
    """Shuffle one client's rows and cut them into train / val / test."""
    rng = np.random.default_rng(seed)
    rows = rows[rng.permutation(len(rows))]
    n_test = int(round(len(rows) * test_fraction))
    n_val = int(round(len(rows) * val_fraction))
    return ClientSplit(train=rows[n_test + n_val :], val=rows[n_test : n_test + n_val], test=rows[:n_test])
