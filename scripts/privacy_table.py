"""The privacy–utility table of docs/privacy.md from the runs of ``simulations.compare`` grids.

``python scripts/privacy_table.py results/fmnist-privacy/pfedhn-split results/fmnist-privacy/dirichlet``
reads every finished run under each grid folder (``runs/<setting>/<strategy>[/<variant>]/seed*/``),
and prints one Markdown row per setting and strategy: final mean-over-clients accuracy (pooled
accuracy in brackets) at each privacy budget, ε as the run's accountant reports it (∞ without
privacy). A cell no run has finished is "not run". A run whose accountant spent more than its target,
or whose last evaluation left clients out (their replies rejected: the runs before 4659a4b, when a
client that diverged kept its NaN model), is refused: its accuracy is not over every client.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from omegaconf import OmegaConf

from fedhyper import record
from fedhyper.results import last_evaluation, read_metrics


def cells(grid: Path) -> dict[tuple[str, str], dict[float, str]]:
    """(setting, strategy) -> {target ε (inf: no privacy): "acc (pooled)"} for the finished runs under ``grid``."""
    table: dict[tuple[str, str], dict[float, str]] = {}
    for summary_file in sorted(grid.glob(f"runs/**/{record.SUMMARY_FILE}")):
        run_dir = summary_file.parent
        setting, strategy = run_dir.relative_to(grid / "runs").parts[:2]
        summary = json.loads(summary_file.read_text())
        privacy = OmegaConf.load(run_dir / record.CONFIG_FILE).privacy
        target = math.inf if privacy.target_epsilon is None else float(privacy.target_epsilon)
        spent = summary["privacy"]["epsilon"] if summary.get("privacy") else math.inf
        if spent > target * 1.001:  # calibration is to 0.1%
            raise ValueError(f"{run_dir} spent ε={spent} over its target {target}")
        left_out = last_evaluation(read_metrics(run_dir)).get(record.EVALUATE_REJECTED, 0)
        if left_out:
            raise ValueError(f"{run_dir} left {left_out} clients out of its last evaluation; run it again")
        text = f"{100 * summary['final_accuracy']:.2f} ({100 * summary['final_accuracy_pooled']:.2f})"
        table.setdefault((setting, strategy), {})[target] = text
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grids", nargs="+", type=Path, help="out_dir folders of simulations.compare")
    args = parser.parse_args(argv)
    budgets = [1.0, 4.0, 8.0, math.inf]
    print("| setting | strategy | " + " | ".join(f"ε = {'∞' if b == math.inf else int(b)}" for b in budgets) + " |")
    print("|---|---|" + "---|" * len(budgets))
    for grid in args.grids:
        for (setting, strategy), row in cells(grid).items():
            print(f"| {setting} | {strategy} | " + " | ".join(row.get(b, "not run") for b in budgets) + " |")


if __name__ == "__main__":
    main()
