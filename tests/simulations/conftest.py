"""The real Flower/Ray simulation that this folder's engine tests share (tests/simulations/shared_run.py)."""

from __future__ import annotations

import os

import pytest
from filelock import FileLock

from tests.simulations.shared_run import FinishedRun, run_shared


@pytest.fixture(scope="session")
def shared_run(hub_copies, tmp_path_factory) -> FinishedRun:
    """The shared simulation, run once per session when a test first asks for it.

    Under pytest-xdist (``make test`` runs a worker per core and one more) the first worker to
    ask runs it, in the folder all workers share, while the others wait on its lock and then
    read what it left.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:  # no workers (``-n 0``, or pytest-xdist not loaded): one session
        return run_shared(tmp_path_factory.mktemp("shared-launch"), hub_copies["cifar10"])
    launch_dir = tmp_path_factory.getbasetemp().parent / "shared-launch"
    with FileLock(f"{launch_dir}.lock"):
        if FinishedRun.is_saved(launch_dir):
            return FinishedRun.load(launch_dir)
        launch_dir.mkdir()
        finished = run_shared(launch_dir, hub_copies["cifar10"])
        finished.save()
        return finished
