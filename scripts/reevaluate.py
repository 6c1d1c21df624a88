"""Evaluate a finished in-process run's last checkpoint again, under other evaluation settings.

``python scripts/reevaluate.py RUN_DIR 'strategy.adapt_steps=0,9,36'`` restores the run's server
and its clients' kept state (private heads, Ditto's personal models) from ``RUN_DIR/checkpoint.pt``
and evaluates every client once per value, without training: one row per value with the mean over
clients, pooled and validation accuracy. It answers what an evaluation protocol (adaptation steps,
FedAvg-FT's fine-tuning steps, the local learning rate they use) is worth on the same trained state;
the value to report is the one a run chooses on validation accuracy, never on test.

Several options (``'strategy.shared_adapt_steps=5,10' 'strategy.shared_adapt_lr=5e-3,1e-2'``) give one
row per combination of their values. The run's own config is the starting point, with the run's round as
the evaluation round; the listed options are the only change. Only options that reach the clients' evaluation make a
difference (a training option changes nothing here, as nothing trains).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path

from fedhyper import record
from fedhyper.results import last_evaluation, read_metrics
from simulations.reevaluation import evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("option", nargs="+", help="key=v1,v2,... (one evaluation per value; several: per combination)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    keys, grids = [], []
    for option in args.option:
        key, _, values = option.partition("=")
        if not values:
            parser.error(f"{option!r} is not key=v1,v2,...")
        keys.append(key)
        grids.append(values.split(","))
    recorded = last_evaluation(read_metrics(args.run_dir))
    for k, values in enumerate(itertools.product(*grids)):
        row = evaluate(args.run_dir, [f"{key}={value}" for key, value in zip(keys, values, strict=True)])
        if k == 0:  # the checkpoint's round, from its first restore: a run still going is ahead of its record
            print(f"{args.run_dir}: recorded at round {recorded.get(record.ROUND)}: "
                  f"{100 * recorded[record.ACCURACY]:.2f} (pooled {100 * recorded[record.ACCURACY_POOLED]:.2f}, "
                  f"validation {100 * recorded[record.VAL_ACCURACY]:.2f}); "
                  f"evaluated again: the checkpoint of round {row[record.ROUND]}")  # fmt: skip
            print(f"| {' | '.join(keys)} | mean over clients (%) | pooled (%) | validation (%) | clients |")
            print("|---" * (len(keys) + 4) + "|")
        print(f"| {' | '.join(values)} | {100 * row[record.ACCURACY]:.2f} | {100 * row[record.ACCURACY_POOLED]:.2f} | "
              f"{100 * row[record.VAL_ACCURACY]:.2f} | {row.get(record.EVAL_CLIENTS, '?')} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
