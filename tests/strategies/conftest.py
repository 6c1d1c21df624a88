"""A strategy's round loop on the in-process grid, its clients discovered, for tests that drive single rounds."""

from __future__ import annotations

import pytest

from fedhyper.config import ExperimentConfig
from strategies import registry
from strategies.app import client_config, round_loop
from strategies.directory import ClientDirectory
from strategies.loop import RoundLoop


@pytest.fixture
def loop_on(in_process_grid):
    """``loop_on(cfg, **grid_options)``: the configured strategy's RoundLoop on a fresh in-process grid."""

    def build(cfg: ExperimentConfig, **grid_options) -> RoundLoop:
        grid = in_process_grid(cfg.data.num_clients, **grid_options)
        directory = ClientDirectory()
        directory.discover(grid, client_config(cfg), expected=cfg.data.num_clients, timeout=5)
        return round_loop(cfg, registry.build(cfg, directory), grid, client_config(cfg))

    return build
