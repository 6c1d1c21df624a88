"""pFedHN across the hypernetwork's design choices, end to end in the in-process engine."""

import json
import math

import pytest
import torch

from fedhyper.config import ExperimentConfig
from fedhyper.models import ModelConfig, build_model
from fedhyper.training import evaluate_ensemble
from simulations.inprocess import run_experiment
from tests.strategies.test_pfedhn import tiny_config


def tiny(**hnet) -> ExperimentConfig:
    cfg = tiny_config(num_clients=6, rounds=8, subset=3000)
    cfg.strategy.local.steps = 15
    cfg.sim.eval_every = 4
    for key, value in hnet.items():
        setattr(cfg.hnet, key, value)
    return cfg


@pytest.mark.parametrize(
    "hnet",
    [
        {"output": "chunked"},
        {"output": "component"},
        {"body": "attention", "output": "chunked"},
        {"init": "hyperfan_in"},
        {"spectral_norm": True},
        {"base": True, "output": "chunked"},
    ],
    ids=["chunked", "component", "attention", "hyperfan_in", "spectral_norm", "base"],
)
def test_each_design_trains_and_reports_its_size(tmp_path, hnet):
    summary = run_experiment(tiny(**hnet), tmp_path)

    assert summary.final_accuracy > summary.initial_accuracy + 0.05
    assert summary.target_parameters == sum(p.numel() for p in build_model(ModelConfig(), (1, 28, 28), 10).parameters())
    if hnet.get("output") == "chunked":
        assert summary.hnet_target_ratio < 10
    assert (tmp_path / "embeddings.png").stat().st_size > 10_000


def test_noise_input_evaluates_an_ensemble_and_reports_uncertainty(tmp_path):
    cfg = tiny(input="noise", noise_samples=4)

    summary = run_experiment(cfg, tmp_path)

    assert summary.final_accuracy > summary.initial_accuracy + 0.05
    last = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert 0 < last["predictive_entropy"] < torch.log(torch.tensor(10.0))
    assert last["mutual_information"] > 0  # the members disagree
    assert last["entropy_wrong"] > last["entropy_correct"]  # uncertain where it errs
    evals = [json.loads(line) for line in (tmp_path / "clients.jsonl").read_text().splitlines()]
    assert all("member-accuracy" in e for e in evals if e["kind"] == "evaluate")


def test_novel_clients_are_held_out_then_fitted_and_reported(tmp_path):
    cfg = tiny()
    cfg.data.num_clients, cfg.novel_clients, cfg.sim.novel_rounds = 8, 2, 4

    summary = run_experiment(cfg, tmp_path)

    novel, trained = summary.novel_clients, cfg.sim.num_rounds
    assert len(novel) == 2 and summary.rounds == trained + 4
    rows = [json.loads(line) for line in (tmp_path / "clients.jsonl").read_text().splitlines()]
    trained_in = {r["client-id"] for r in rows if r["kind"] == "train" and r["round"] <= trained}
    fitted_in = {r["client-id"] for r in rows if r["kind"] == "train" and r["round"] > trained}
    assert trained_in.isdisjoint(novel) and fitted_in <= set(novel) and fitted_in
    assert summary.generalization_gap == pytest.approx(summary.final_accuracy - summary.novel_accuracy)
    assert 0.0 < summary.novel_accuracy <= 1.0


def test_fitting_novel_embeddings_leaves_the_hypernetwork_and_other_clients_alone():
    from fedhyper.hypernet import HyperNetConfig, HyperNetwork
    from fedhyper.models import target_shapes
    from fedhyper.outer import HyperNetTrainer, OuterConfig

    model = build_model(ModelConfig(name="mlp", hidden=8), (1, 4, 4), 3)
    hnet = HyperNetwork(target_shapes(model), 5, HyperNetConfig(hidden_dim=16))
    trainer = HyperNetTrainer(hnet, OuterConfig())
    trainer.step([0, 1], {n: w + 0.1 for n, w in trainer.generate([0, 1]).items()}, [5, 5])  # momentum to carry
    before = {n: p.detach().clone() for n, p in hnet.named_parameters()}

    trainer.fit_embeddings([3], {n: w + 0.1 for n, w in trainer.generate([3]).items()}, [5])

    after = dict(hnet.named_parameters())
    for name, value in before.items():
        if name != "conditioner.table.weight":
            torch.testing.assert_close(after[name], value)
    table, old = after["conditioner.table.weight"], before["conditioner.table.weight"]
    torch.testing.assert_close(table[[0, 1, 2, 4]], old[[0, 1, 2, 4]])
    assert not torch.allclose(table[3], old[3])


def test_ensemble_metrics_from_known_members():
    model = build_model(ModelConfig(name="mlp", hidden=4), (1, 2, 2), 2)
    x, y = torch.randn(50, 1, 2, 2), torch.randint(0, 2, (50,))
    weights = {n: 10 * p.detach() if n.startswith("fc3") else p.detach() for n, p in model.named_parameters()}

    same = evaluate_ensemble(model, [weights, weights], x, y)
    flipped = {**weights, "fc3.weight": -weights["fc3.weight"], "fc3.bias": -weights["fc3.bias"]}
    opposed = evaluate_ensemble(model, [weights, flipped], x, y)

    assert same["mutual_information"] == pytest.approx(0.0, abs=1e-6)  # identical members never disagree
    assert opposed["mutual_information"] > 0.1
    assert opposed["entropy"] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-4)  # p̄ = (1/2, 1/2)


def test_ensemble_with_a_diverged_member_stays_finite():
    model = build_model(ModelConfig(name="mlp", hidden=4), (1, 2, 2), 2)
    x, y = torch.randn(50, 1, 2, 2), torch.randint(0, 2, (50,))
    weights = {n: p.detach() for n, p in model.named_parameters()}
    nan = {n: torch.full_like(w, float("nan")) for n, w in weights.items()}

    alone = evaluate_ensemble(model, [weights], x, y)
    with_nan = evaluate_ensemble(model, [weights, nan], x, y)
    all_nan = evaluate_ensemble(model, [nan, nan], x, y)

    assert all(math.isfinite(v) for v in [*with_nan.values(), *all_nan.values()])
    assert with_nan["accuracy"] == pytest.approx(alone["accuracy"])  # a uniform member does not move the argmax
    assert with_nan["member_accuracy"] == pytest.approx(alone["accuracy"] / 2)  # the broken member is always wrong
    assert all_nan["accuracy"] == 0.0 and all_nan["member_accuracy"] == 0.0
    assert all_nan["loss"] == pytest.approx(math.log(2))  # a uniform guess's loss
