"""Paired differences between labels of different grids, as a grid's report gives them within one.

``.venv/bin/python -m scripts.paired results/fmnist-grid:fedavg_ft \\
    results/fmnist-grid/ablation:fedhyper/fedhyper-no-shared-model``

Each argument is ``<report folder>:<run label>``: a folder holding a grid's ``results.csv`` (and its
``settled.yaml`` after ``settle=true``), and a label as the report names it (``strategy`` or
``strategy/variant``), optionally followed by ``@key=value[,key=value]``: evaluation options over the
settled ones (``results/fmnist-grid:fedhyper@strategy.ensemble_weight=0.5`` reads FedHyper with the plain
mean of its two models' predictions where settling chose a weight). The first is the reference. Per
setting, every label's final accuracy (mean over clients, and pooled) with mean ± std over seeds, and its
paired difference to the reference over the seeds both ran, with the 95% t-interval. A cell that its
``settled.yaml`` settled is read as settled: each seed with the chosen options, from the evaluations its run
keeps (``reevaluation.jsonl``) or its own last evaluation where the options evaluate it alike; nothing is
evaluated here, and a seed without a kept evaluation is an error. Used where two grids' runs meet (the
README's equal-traffic comparison of FedHyper without its shared model and FedAvg-FT), and for what an
evaluation option that settling chose is worth (the ablation's plain-mean row).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import yaml

from fedhyper import record
from fedhyper.results import paired_interval, run_label, stat
from simulations.reevaluation import NotEvaluated, evaluate_all
from simulations.report import pct

Accuracies = dict[str, dict[int, tuple[float, float]]]  # setting -> seed -> (mean over clients, pooled)


def _chosen(folder: Path, label: str) -> dict[str, dict[str, Any]]:
    """Per setting, the options ``folder``'s settled.yaml chose for ``label``; none without the file."""
    path = folder / "settled.yaml"
    cells = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    return {setting: cell["chosen"] for setting, by_label in cells.items()
            if (cell := by_label.get(label)) and cell.get("chosen") is not None}  # fmt: skip


def _options(given: str) -> dict[str, Any]:
    """``key=value,key=value`` as options, each value read as YAML (``0.5``, ``null``, ``10``)."""
    out: dict[str, Any] = {}
    for item in filter(None, given.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"{item!r} is not key=value")
        out[key] = yaml.safe_load(value)
    return out


def accuracies(folder: Path, label: str, options: dict[str, Any] | None = None) -> Accuracies:
    """Per setting and seed, a label's final accuracies (fractions) in ``folder``'s grid, settled where it was.

    ``options``: evaluation options over the settled ones (over none where a setting was not settled); every
    seed is then read from its kept evaluations.
    """
    out: Accuracies = {}
    with (folder / "results.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if run_label(r["strategy"], r["variant"]) == label]
    if not rows:
        raise ValueError(f"{folder / 'results.csv'} has no run labelled {label!r}")
    settled = _chosen(folder, label)
    for r in rows:
        seed, acc = int(r["seed"]), (float(r["final_accuracy"]), float(r["final_accuracy_pooled"]))
        chosen = settled.get(r["setting"])
        if options:
            chosen = {**(chosen or {}), **options}
        if chosen is not None:
            [got] = evaluate_all([(folder / r["run_dir"], chosen)], compute=False)
            if isinstance(got, NotEvaluated):
                raise ValueError(f"{label} · {r['setting']} · seed {seed}: {got}")
            acc = (got[record.ACCURACY], got[record.ACCURACY_POOLED])
        out.setdefault(r["setting"], {})[seed] = acc
    return out


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
                mean, half = paired_interval([acc[setting][s][0] - ref_seeds[s][0] for s in paired])
                spread = "" if half is None else f" ± {100 * half:.2f}"
                delta = f"{100 * mean:+.2f}{spread} ({len(paired)} seeds)"
            lines.append(f"| {setting} | {name} | {len(seeds)} | {pct(stat(means))} | {pct(stat(pooled))} | {delta} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="+", metavar="FOLDER:LABEL[@KEY=VALUE,...]", help="the first is the reference")
    args = parser.parse_args(argv)
    labelled = []
    for arg in args.labels:
        folder, sep, label = arg.partition(":")
        label, _, given = label.partition("@")
        if not sep or not label:
            parser.error(f"{arg!r}: give <report folder>:<run label>")
        try:
            options = _options(given)
        except ValueError as e:
            parser.error(f"{arg!r}: {e}")
        name = f"{label}@{given}" if given else label
        labelled.append((f"{name} ({folder})", accuracies(Path(folder), label, options)))
    print("\n".join(table(labelled)))


if __name__ == "__main__":
    main()
