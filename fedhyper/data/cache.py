"""Partitions computed once and kept on disk, so that every client process loads them by id.

The key is a hash of everything that decides the partition: the labels themselves (so a
different ``data.root`` or ``data.subset`` cannot hit a stale file), each example's owner for
the natural partition, the partitioner and its
parameters, the seed and the flwr-datasets version. Files are written beside and renamed
into place, so processes that start together can race without reading a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fedhyper.data.partition import ClientRows, partition_indices

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the file layout or the partition code changes what it stores
ENV_DIR = "FEDHYPER_CACHE_DIR"


def cache_dir(configured: str | None) -> Path | None:
    """Where partitions are kept: the option, else ``$FEDHYPER_CACHE_DIR``, else ~/.cache/fedhyper.

    An empty string (in the option or the environment) turns the cache off.
    """
    chosen = configured if configured is not None else os.environ.get(ENV_DIR)
    if chosen is None:
        chosen = str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedhyper")
    return Path(chosen).expanduser() if chosen else None


def partition_key(labels: np.ndarray, params: dict[str, object], owners: np.ndarray | None = None) -> str:
    """A hex digest of the labels (and owners, when given) and the partition's parameters."""
    h = hashlib.sha256()
    h.update(
        json.dumps({**params, "format": FORMAT, "flwr_datasets": version("flwr-datasets")}, sort_keys=True).encode()
    )
    h.update(np.ascontiguousarray(labels).astype(np.int64).tobytes())
    if owners is not None:
        h.update(b"owners")
        h.update(np.ascontiguousarray(owners).astype(np.int64).tobytes())
    return h.hexdigest()[:32]


def cached_partition(
    labels: np.ndarray,
    num_clients: int,
    partition: str,
    classes_per_client: int,
    alpha: float,
    seed: int,
    directory: Path | None,
    owners: np.ndarray | None = None,
) -> ClientRows:
    """Every client's rows: read from ``directory`` when present, else computed once and stored.

    ``owners`` (each row's owner, as integers) decides the natural partition and is ignored by the others.
    """
    params = {"num_clients": num_clients, "partition": partition, "seed": seed}
    if partition == "pathological":
        params["classes_per_client"] = classes_per_client
    if partition == "dirichlet":
        params["alpha"] = alpha
    owners = owners if partition == "natural" else None
    path = directory / f"partition-{partition_key(labels, params, owners)}.npz" if directory else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as f:
                found = ClientRows(rows=f["rows"], offsets=f["offsets"])
            if len(found) == num_clients and found.offsets[-1] == len(found.rows):
                return found
            log.warning("partition cache %s does not match its key; computing it again", path)
        except (OSError, ValueError, KeyError) as err:
            log.warning("partition cache %s cannot be read (%s); computing it again", path, err)
    parts = ClientRows.from_lists(
        partition_indices(labels, num_clients, partition, classes_per_client, alpha, seed, owners)
    )
    if path is not None:
        write_atomic(path, lambda fh: np.savez(fh, rows=parts.rows, offsets=parts.offsets), "partition")
    return parts


def write_atomic(path: Path, write: Callable[[BinaryIO], None], what: str) -> None:
    """``write(file)`` into a file beside ``path``, then renamed into place: processes that start
    together never read half a file. A read-only or full disk costs the cache, never the run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; other users' runs may share the cache
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as err:
        log.warning("%s cache %s cannot be written (%s); every process computes it again", what, path, err)
