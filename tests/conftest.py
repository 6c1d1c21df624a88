"""Shared fixtures: small real data, tiny hypernetworks, fake Flower replies."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from fedhyper.data import fmnist


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
    return fmnist.DEBIAN_DIR.is_dir()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class InProcessGrid:
    """A Flower Grid that delivers each message to the real ClientApp in this process.

    Node ids are arbitrary and unrelated to client ids, as on a real transport; node i
    holds partition ``partition_of[i]``. Tests can drop or tamper with replies through
    ``on_reply``.
    """

    def __init__(self, num_clients: int, node_offset: int = 1000, on_reply=None) -> None:
        from flwr.app import Context, RecordDict
        from flwr.supercore.task_identity import TaskIdentity

        from clients.app import app

        # Messages are stamped with the run and node of the process that builds them.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1

        self.app = app
        self.sent: list = []
        self.on_reply = on_reply
        # Shuffled node ids so that node order says nothing about client ids.
        ids = list(range(num_clients))[::-1]
        self.contexts = {
            node_offset + 7 * i: Context(
                run_id=1,
                node_id=node_offset + 7 * i,
                node_config={"partition-id": cid, "num-partitions": num_clients},
                state=RecordDict(),
                run_config={},
            )
            for i, cid in enumerate(ids)
        }

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        from flwr.app import Error, Message

        from fedhyper import protocol

        for msg in messages:
            self.sent.append(msg)
            if msg.content.config_records.get(protocol.CONFIG, {}).get(protocol.FAULT) == "timeout":
                continue  # what the server sees of a client that overran the timeout: nothing
            try:
                reply = self.app(msg, self.contexts[msg.metadata.dst_node_id])
            except Exception as err:  # Flower's runtime turns a raising ClientApp into an error reply
                reply = Message(Error(code=0, reason=repr(err)), reply_to=msg)
            if self.on_reply is not None:
                reply = self.on_reply(reply)
            if reply is not None:
                replies.append(reply)
        return replies


@pytest.fixture
def in_process_grid():
    return InProcessGrid
