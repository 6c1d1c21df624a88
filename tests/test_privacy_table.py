"""scripts/privacy_table.py: the privacy–utility table from a grid's finished runs."""

import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import privacy_table  # noqa: E402

from fedhyper.config import ExperimentConfig  # noqa: E402


def finished_run(
    grid: Path, strategy: str, variant: str, target: float | None, spent: float | None, acc: float, left_out: int = 0
):
    run_dir = grid / "runs" / "pfedhn" / strategy / variant / "seed0-0123456789"
    run_dir.mkdir(parents=True)
    cfg = OmegaConf.structured(ExperimentConfig)
    cfg.privacy.target_epsilon = target
    OmegaConf.save(cfg, run_dir / "config.yaml")
    privacy = None if spent is None else {"epsilon": spent}
    summary = {"final_accuracy": acc, "final_accuracy_pooled": acc + 0.01, "privacy": privacy}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    row = {"round": 10, "accuracy": acc, "evaluate_rejected": left_out}
    (run_dir / "metrics.jsonl").write_text(json.dumps({"round": 0, "accuracy": 0.1}) + "\n" + json.dumps(row) + "\n")


def test_each_run_fills_its_budgets_cell_and_the_rest_say_not_run(tmp_path, capsys):
    finished_run(tmp_path, "fedavg_ft", ".", None, None, 0.9)
    finished_run(tmp_path, "fedavg_ft", "eps4", 4.0, 3.99, 0.5)

    privacy_table.main([str(tmp_path)])

    rows = capsys.readouterr().out.splitlines()
    assert rows[2] == "| pfedhn | fedavg_ft | not run | 50.00 (51.00) | not run | 90.00 (91.00) |"


def test_a_run_that_spent_more_than_its_target_is_refused(tmp_path):
    finished_run(tmp_path, "pfedhn", "eps1", 1.0, 1.2, 0.1)

    with pytest.raises(ValueError, match="over its target"):
        privacy_table.main([str(tmp_path)])


def test_a_run_that_left_clients_out_of_its_last_evaluation_is_refused(tmp_path):
    finished_run(tmp_path, "ditto", "eps1", 1.0, 0.99, 0.44, left_out=49)

    with pytest.raises(ValueError, match="left 49 clients out"):
        privacy_table.main([str(tmp_path)])
