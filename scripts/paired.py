"""Paired differences between labels of different grids, as a grid's report gives them within one.

``.venv/bin/python -m scripts.paired results/fmnist-grid:fedavg_ft \\
    results/fmnist-grid/ablation:fedhyper/fedhyper-no-shared-model``

Each argument is ``<report folder>:<run label>``: a folder holding a grid's ``results.csv`` (and its
``settled.yaml`` after ``settle=true``), and a label as the report names it (``strategy`` or
``strategy/variant``). The first is the reference. Per setting, every label's final accuracy (mean over
clients, and pooled) with mean ± std over seeds, and its paired difference to the reference over the seeds
both ran, with the 95% t-interval. A cell that its ``settled.yaml`` settled is read as settled: each seed
with the chosen options, from the evaluations its run keeps (``reevaluation.jsonl``) or its own last
evaluation where the options evaluate it alike; nothing is evaluated here, and a seed without a kept
evaluation is an error. Used where two grids' runs meet: the README's equal-traffic comparison of
FedHyper without its shared model and FedAvg-FT.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from pathlib import Path
from typing import Any

import yaml

from fedhyper import record
from fedhyper.results import run_label, t95
from simulations.reevaluation import NotEvaluated, evaluate_all

Accuracies = dict[str, dict[int, tuple[float, float]]]  # setting -> seed -> (mean over clients, pooled)


def _chosen(folder: Path, setting: str, label: str) -> dict[str, Any] | None:
    path = folder / "settled.yaml"
    cells = yaml.safe_load(path.read_text()) if path.is_file() else {}
    return ((cells or {}).get(setting, {}).get(label) or {}).get("chosen")


def accuracies(folder: Path, label: str) -> Accuracies:
    """Per setting and seed, a label's final accuracies (fractions) in ``folder``'s grid, settled where it was."""
    out: Accuracies = {}
    with (folder / "results.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if run_label(r["strategy"], r["variant"]) == label]
    if not rows:
        raise ValueError(f"{folder / 'results.csv'} has no run labelled {label!r}")
    for r in rows:
        seed, acc = int(r["seed"]), (float(r["final_accuracy"]), float(r["final_accuracy_pooled"]))
        if (chosen := _chosen(folder, r["setting"], label)) is not None:
            [got] = evaluate_all([(folder / r["run_dir"], chosen)], compute=False)
            if isinstance(got, NotEvaluated):
                raise ValueError(f"{label} · {r['setting']} · seed {seed}: {got}")
            acc = (got[record.ACCURACY], got[record.ACCURACY_POOLED])
        out.setdefault(r["setting"], {})[seed] = acc
    return out


def _pm(values: list[float]) -> str:
    spread = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{100 * statistics.fmean(values):.2f}{spread}"


def table(labelled: list[tuple[str, Accuracies]]) -> list[str]:
    """Markdown rows: per setting of the reference, each label's accuracies and paired Δ to the reference."""
    (ref_name, ref), lines = labelled[0], []
    lines += ["| setting | label | seeds | final (%) | pooled (%) | Δ to reference (pp) |", "|---|---|---|---|---|---|"]
    for setting, ref_seeds in ref.items():
        for name, acc in labelled:
            seeds = sorted(acc.get(setting, {}))
            if not seeds:
                continue
            means, pooled = [acc[setting][s][0] for s in seeds], [acc[setting][s][1] for s in seeds]
            paired = sorted(set(seeds) & set(ref_seeds))
            if name == ref_name or not paired:
                delta = "–"
            else:
                diffs = [100 * (acc[setting][s][0] - ref_seeds[s][0]) for s in paired]
                half = t95(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
                delta = f"{statistics.fmean(diffs):+.2f}" + (f" ± {half:.2f}" if half is not None else "")
                delta += f" ({len(paired)} seeds)"
            lines.append(f"| {setting} | {name} | {len(seeds)} | {_pm(means)} | {_pm(pooled)} | {delta} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="+", metavar="FOLDER:LABEL", help="the first is the reference")
    args = parser.parse_args(argv)
    labelled = []
    for arg in args.labels:
        folder, sep, label = arg.partition(":")
        if not sep or not label:
            parser.error(f"{arg!r}: give <report folder>:<run label>")
        labelled.append((f"{label} ({folder})", accuracies(Path(folder), label)))
    print("\n".join(table(labelled)))


if __name__ == "__main__":
    main()
