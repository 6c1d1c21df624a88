"""Client partitions: flwr-datasets partitioners over labels held in memory.

Only the label column goes through ``datasets``; the partitioners decide which rows each
client owns, for all clients in one pass, and the images stay in one NumPy array shared by
every client of a process. ``ClientRows`` holds every client's rows as one flat array and
offsets, which is what ``fedhyper.data.cache`` stores on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARTITIONS = ("pathological", "dirichlet", "iid")


@dataclass(frozen=True)
class ClientSplit:
    """Row indices into the pooled dataset of one client's train / val / test examples."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class ClientRows:
    """Every client's rows, concatenated: client i owns ``rows[offsets[i]:offsets[i + 1]]``."""

    rows: np.ndarray  # [total rows] int64
    offsets: np.ndarray  # [num_clients + 1] int64

    @classmethod
    def from_lists(cls, parts: list[np.ndarray]) -> ClientRows:
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        rows = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return cls(rows=rows, offsets=offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, cid: int) -> np.ndarray:
        return self.rows[self.offsets[cid] : self.offsets[cid + 1]]


def _partitioner(partition: str, num_clients: int, classes_per_client: int, alpha: float, seed: int):
    # Imported here: ``datasets`` costs a second at start-up, and a process that finds the
    # partition in the cache never needs it.
    from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, PathologicalPartitioner

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


def _contiguous_shards(n: int, num_clients: int) -> list[np.ndarray]:
    """``Dataset.shard(num_clients, i, contiguous=True)`` for every i: the first n % k shards get one more."""
    div, mod = divmod(n, num_clients)
    starts = [div * i + min(i, mod) for i in range(num_clients + 1)]
    return [np.arange(starts[i], starts[i + 1], dtype=np.int64) for i in range(num_clients)]


def partition_indices(
    labels: np.ndarray,
    num_clients: int,
    partition: str = "pathological",
    classes_per_client: int = 2,
    alpha: float = 0.3,
    seed: int = 0,
) -> list[np.ndarray]:
    """Split row indices of ``labels`` among ``num_clients``; the same for the same seed.

    The rows are those ``partitioner.load_partition(i)`` would give, read from the
    partitioner's assignment after one call instead of one ``Dataset.select`` per client
    (which took about 10 s for 10,000 clients).
    """
    partitioner = _partitioner(partition, num_clients, classes_per_client, alpha, seed)
    if partition == "iid":
        return _contiguous_shards(len(labels), num_clients)
    from datasets import Dataset

    partitioner.dataset = Dataset.from_dict({"label": labels, "row": np.arange(len(labels))})
    partitioner.load_partition(0)  # checks the arguments and assigns every client's rows at once
    assigned = getattr(partitioner, "_partition_id_to_indices", None)
    if not isinstance(assigned, dict) or len(assigned) != num_clients:  # a flwr-datasets without it
        return [np.asarray(partitioner.load_partition(i)["row"], dtype=np.int64) for i in range(num_clients)]
    # The "row" column is the identity, so the assigned indices are the rows themselves.
    return [np.asarray(assigned[i], dtype=np.int64) for i in range(num_clients)]


def split_client(rows: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> ClientSplit:
    """Shuffle one client's rows and cut them into train / val / test."""
    rng = np.random.default_rng(seed)
    rows = rows[rng.permutation(len(rows))]
    n_test = int(round(len(rows) * test_fraction))
    n_val = int(round(len(rows) * val_fraction))
    return ClientSplit(train=rows[n_test + n_val :], val=rows[n_test : n_test + n_val], test=rows[:n_test])
