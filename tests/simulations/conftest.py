"""The real Flower/Ray simulation that this folder's engine tests share (tests/simulations/shared_run.py)."""

from __future__ import annotations

import pytest

from tests.simulations.shared_run import FinishedRun, run_shared


@pytest.fixture(scope="session")
def shared_run(hub_copies, tmp_path_factory) -> FinishedRun:
    """The shared simulation, run once per session when a test first asks for it."""
    return run_shared(tmp_path_factory.mktemp("shared-launch"), hub_copies["cifar10"])
