"""What an evaluation reports: mean over clients, pooled over examples, and the validation split."""

import json
import os

import pytest
import torch
from flwr.app import MetricRecord, RecordDict

from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from fedhyper.data import federated
from simulations.inprocess import run_experiment
from strategies.evaluation import evaluation_summary
from strategies.loop import NoFinalEvaluation
from strategies.registry import get
from strategies.replies import Reply


def test_pooled_accuracy_weighs_clients_by_their_test_examples_and_the_mean_does_not(evaluation_metrics):
    def reply(*figures) -> Reply:  # as a client's checked evaluation reply reaches the strategy
        metrics = evaluation_metrics(*figures)
        return Reply(RecordDict({protocol.METRICS: MetricRecord(metrics)}), metrics)

    replies = {0: reply(0, 10, 1.0, 2, 0.5), 1: reply(1, 30, 0.0, 6, 1.0), 2: reply(2, 0, 0.0, 0, 0.0)}
    summary = evaluation_summary(replies)

    assert summary["accuracy"] == pytest.approx(0.5)  # clients without test examples are left out
    assert summary["accuracy_pooled"] == pytest.approx(10 / 40)
    assert summary["val_accuracy"] == pytest.approx(0.75)
    assert summary["val_accuracy_pooled"] == pytest.approx((1 + 6) / 8)
    assert summary["eval_clients"] == summary["val_clients"] == 2


def tiny(name: str = "fedavg") -> ExperimentConfig:
    cfg = ExperimentConfig(strategy=get(name).config_cls())
    cfg.data.num_clients, cfg.data.subset, cfg.data.partition = 3, 600, "iid"
    cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every = 2, 3, 1
    cfg.strategy.local.steps = 2
    return cfg


def test_a_run_records_pooled_and_validation_accuracy_in_its_rows_and_summary(tmp_path):
    summary = run_experiment(tiny(), tmp_path)

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert {"accuracy", "accuracy_pooled", "val_accuracy", "val_accuracy_pooled"} <= set(last)
    assert summary.final_accuracy_pooled == last["accuracy_pooled"]
    assert summary.best_accuracy_pooled == max(r["accuracy_pooled"] for r in rows)
    assert summary.val_accuracy == last["val_accuracy"]
    assert 0.0 <= summary.val_accuracy <= 1.0
    # What ran it: the same config gives the same run on one machine only (docs/strategies.md)
    assert summary.engine == "inprocess" and summary.machine["cores"] == os.cpu_count()
    assert summary.machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert json.loads((tmp_path / "summary.json").read_text())["machine"] == summary.machine


def test_with_eval_test_off_no_test_example_is_read(tmp_path, monkeypatch):
    """Tuning trials: out-of-range test labels would make any read of the test split raise."""
    clean = federated.FederatedDataset.client

    def poisoned(self, cid):
        data = clean(self, cid)
        return federated.ClientData(data.x_train, data.y_train, torch.zeros_like(data.x_test),
                                    torch.full_like(data.y_test, -1), data.x_val, data.y_val)  # fmt: skip

    monkeypatch.setattr(federated.FederatedDataset, "client", poisoned)
    cfg = tiny()
    cfg.sim.eval_test = False
    summary = run_experiment(cfg, tmp_path)

    assert summary.final_accuracy is None and summary.final_accuracy_pooled is None
    assert summary.val_accuracy is not None
    assert summary.rejected_replies == {}
    cfg.sim.eval_test = True  # the same poison with the test split read: every client's evaluation fails
    with pytest.raises(NoFinalEvaluation, match=r"none of the 3 clients .* error x\d+ \(latest: IndexError"):
        run_experiment(cfg, tmp_path / "read")
