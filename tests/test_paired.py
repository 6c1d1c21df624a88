"""scripts/paired.py: paired differences between labels of two grids, read as their reports settled them."""

import csv
import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from fedhyper.config import ExperimentConfig
from fedhyper.results import run_label
from scripts import paired

FIELDS = ("strategy", "variant", "setting", "seed", "final_accuracy", "final_accuracy_pooled", "run_dir")
CHOSEN = {"strategy.finetune_steps": 36, "strategy.finetune_lr": 0.002}


def grid(folder: Path, strategy: str, variant: str, recorded: list[float], kept: list[float] | None = None) -> Path:
    """A report folder with one label's finished runs (seeds 0..); ``kept``: settled, with these kept evaluations."""
    folder.mkdir(parents=True)
    rows = []
    for seed, acc in enumerate(recorded):
        run_dir = folder / "runs" / "pfedhn" / strategy / variant / f"seed{seed}-0123456789"
        run_dir.mkdir(parents=True)
        OmegaConf.save(OmegaConf.structured(ExperimentConfig), run_dir / "config.yaml")
        (run_dir / "summary.json").write_text(json.dumps({"rounds": 200}))
        (run_dir / "metrics.jsonl").write_text(json.dumps({"round": 100, "accuracy": acc}) + "\n")
        if kept is not None:
            other = {
                "options": {**CHOSEN, "strategy.finetune_steps": 3},
                "metrics": {"round": 200, "accuracy": 0.1, "accuracy_pooled": 0.2},
            }
            mine = {"options": CHOSEN, "metrics": {"round": 200, "accuracy": kept[seed], "accuracy_pooled": 0.5}}
            lines = [json.dumps(other)] + ([json.dumps(mine)] if kept[seed] is not None else [])
            (run_dir / "reevaluation.jsonl").write_text("\n".join(lines) + "\n")
        rows.append([strategy, variant, "pfedhn", seed, acc, acc, run_dir.relative_to(folder).as_posix()])
    with (folder / "results.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([FIELDS, *rows])
    if kept is not None:
        settled = {"pfedhn": {run_label(strategy, variant): {"chosen": CHOSEN}}}
        (folder / "settled.yaml").write_text(yaml.safe_dump(settled))
    return folder


def test_a_settled_reference_is_read_as_settled_and_the_other_grid_as_recorded(tmp_path, capsys):
    a = grid(tmp_path / "a", "fedavg_ft", "base", recorded=[0.5, 0.5, 0.5], kept=[0.90, 0.91, 0.92])
    b = grid(tmp_path / "b", "fedhyper", "no-shared", recorded=[0.91, 0.93, 0.92])

    paired.main([f"{a}:fedavg_ft", f"{b}:fedhyper/no-shared"])

    rows = capsys.readouterr().out.splitlines()
    assert rows[2] == f"| pfedhn | fedavg_ft ({a}) | 3 | 91.00 ± 1.00 | 50.00 ± 0.00 | – |"
    # differences 1, 2, 0 points: mean 1, std 1, t(2) 4.303 / √3
    assert (
        rows[3] == f"| pfedhn | fedhyper/no-shared ({b}) | 3 | 92.00 ± 1.00 | 92.00 ± 1.00 | +1.00 ± 2.48 (3 seeds) |"
    )


def test_a_settled_seed_without_a_kept_evaluation_is_an_error(tmp_path):
    a = grid(tmp_path / "a", "fedavg_ft", "base", recorded=[0.5, 0.5], kept=[0.9, None])

    with pytest.raises(ValueError, match="seed 1: .*not evaluated"):
        paired.main([f"{a}:fedavg_ft", f"{a}:fedavg_ft"])


def test_a_label_the_grid_lacks_is_named(tmp_path):
    a = grid(tmp_path / "a", "fedavg_ft", "base", recorded=[0.5])

    with pytest.raises(ValueError, match="no run labelled 'ditto'"):
        paired.main([f"{a}:ditto"])


def test_options_after_the_label_replace_the_settled_ones(tmp_path, capsys):
    a = grid(tmp_path / "a", "fedavg_ft", "base", recorded=[0.5, 0.5, 0.5], kept=[0.90, 0.91, 0.92])

    paired.main([f"{a}:fedavg_ft", f"{a}:fedavg_ft@strategy.finetune_steps=3"])

    rows = capsys.readouterr().out.splitlines()
    # the kept evaluation with 3 fine-tuning steps (10%) on every seed: differences -80, -81, -82 points
    assert rows[3].startswith(
        f"| pfedhn | fedavg_ft@strategy.finetune_steps=3 ({a}) | 3 | 10.00 ± 0.00 | 20.00 ± 0.00 |"
    )
    assert rows[3].endswith("| -81.00 ± 2.48 (3 seeds) |")


def test_options_without_a_kept_evaluation_are_an_error_and_a_malformed_one_is_refused(tmp_path):
    a = grid(tmp_path / "a", "fedavg_ft", "base", recorded=[0.5], kept=[0.9])

    with pytest.raises(ValueError, match="seed 0: .*not evaluated"):
        paired.main([f"{a}:fedavg_ft", f"{a}:fedavg_ft@strategy.finetune_steps=5"])
    with pytest.raises(SystemExit):
        paired.main([f"{a}:fedavg_ft@strategy.finetune_steps"])
