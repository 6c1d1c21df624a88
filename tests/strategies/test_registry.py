"""Every registered strategy, end to end on the real ClientApp, in a tiny seeded simulation."""

import subprocess
import sys
from pathlib import Path

import pytest

from fedhyper.algorithms import ALGORITHMS, Registry
from strategies import experiment
from strategies.app import run
from strategies.fedprox import FedProxConfig
from strategies.registry import REGISTRY, get

NAMES = sorted(REGISTRY)
# Near the others' time: pFedMe solves for its personal model in K steps on every batch (2 here, not its paper's 5);
# Ditto's personal model and FedRep's head take as many steps as strategy.local.steps (tiny_config's TINY_OWN_STEPS).
OWN_OVERRIDES = {"pfedme": ["strategy.inner_steps=2"]}


def test_finding_the_server_app_imports_no_strategy():
    """``flwr run`` finds ``strategies.app`` before it sends a run, which imports the package: it must stay light."""
    probe = "import sys, strategies; print(sorted(m for m in ('torch', 'strategies.registry') if m in sys.modules))"
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True, timeout=60)

    assert done.stdout == "[]\n", done.stderr[-2000:]


def test_the_registry_holds_every_public_name():
    assert set(NAMES) == {
        "local", "fedavg", "fedavg_ft", "fedprox", "fedper", "fedrep", "lg_fedavg",
        "ditto", "perfedavg", "pfedme", "pfedla", "pfedhn", "pfedhn_pc", "pefll", "fedhyper",
    }  # fmt: skip


def test_an_unknown_name_fails_with_the_known_ones():
    with pytest.raises(ValueError, match="fedavg, fedavg_ft"):
        get("fedsgd")


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_improves_on_its_round_zero_accuracy(name, in_process_grid, tmp_path, tiny_config):
    cfg = tiny_config(name, "data.subset=3000", "sim.num_rounds=4", "sim.clients_per_round=4", "sim.eval_every=4",
                      "strategy.local.steps=15", *OWN_OVERRIDES.get(name, []))  # fmt: skip
    grid = in_process_grid(cfg.data.num_clients)

    summary = run(grid, experiment.Experiment(cfg, tmp_path, fixed_num_clients=True))

    assert summary.strategy == name
    assert summary.rounds == cfg.sim.num_rounds
    assert summary.final_accuracy > summary.initial_accuracy + 0.05, summary


def test_one_registration_serves_both_sides_and_refuses_a_second():
    import clients.app  # noqa: F401  (the client side registers on import)
    from clients.personal import PLAIN

    registry = Registry()
    registry.register_server(FedProxConfig, lambda cfg, directory: "server")
    registry.register_client("fedprox", routine="fedprox routine", queries={"probe": print})

    assert registry.server("fedprox").build(None, None) == "server"
    assert registry.routine("fedprox", PLAIN) == "fedprox routine"
    assert registry.routine("fedavg", PLAIN) is PLAIN  # no client side: plain training
    assert registry.queries() == {"probe": print}
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_server(FedProxConfig, lambda cfg, directory: None)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_client("fedprox")
    with pytest.raises(ValueError, match="handled by another"):
        registry.register_client("other", queries={"probe": print})
    # Every client side the ClientApp registered belongs to a strategy the ServerApp knows.
    assert set(ALGORITHMS.clients) <= set(ALGORITHMS.servers)
    assert ALGORITHMS.routine("fedprox", PLAIN) is not PLAIN and ALGORITHMS.routine("pfedhn", PLAIN) is PLAIN
