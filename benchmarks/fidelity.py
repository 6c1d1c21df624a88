"""pFedHN's fidelity: ``strategy=pfedhn`` against the one-client-per-step reference loop, at one budget.

    python -m benchmarks.fidelity                                  # both settings, 2,000 updates of 50 steps
    python -m benchmarks.fidelity --settings dirichlet --seeds 0 1 2
    python -m benchmarks.fidelity --settings dirichlet strategy.outer.weighting=examples  # pfedhn with an override
    python -m benchmarks.fidelity --tiny                           # seconds; shows it still works

For each named comparison setting (``simulations.config.DATA_SETTINGS``) and seed, the same number
of client updates of the same local training in both:

(a) the simulation's ``strategy=pfedhn`` at its defaults, ``updates / per_round`` rounds of
    ``per_round`` clients, on the in-process engine (the same ServerApp and ClientApp as a Flower
    run; ``tests/simulations`` shows the two engines agree), evaluated after the last round;
(b) ``benchmarks.inprocess.pfedhn_reference``: ``updates`` hypernetwork steps of one uniformly drawn
    client each, as pFedHN's reference code runs, with the same data, hypernetwork, outer optimiser
    and local training.

It prints the final mean-over-clients and pooled test accuracy of both and their difference in
points, and appends one JSON line per setting and seed to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from benchmarks.inprocess import pfedhn_reference
from fedhyper.config import ExperimentConfig
from simulations.config import DATA_SETTINGS
from simulations.inprocess import run_experiment
from simulations.run import check

TINY = ["data.subset=1500", "data.num_clients=6"]


def experiment(setting: str, seed: int, updates: int, per_round: int, steps: int, extra: list[str]) -> ExperimentConfig:
    """``strategy=pfedhn`` in ``setting`` with ``updates`` client updates of ``steps`` local steps."""
    if updates % per_round:
        raise SystemExit(f"--updates {updates} is not a whole number of rounds of --per-round {per_round}")
    rounds = updates // per_round
    return check(
        [
            *DATA_SETTINGS[setting],
            "strategy=pfedhn",
            f"sim.num_rounds={rounds}",
            f"sim.clients_per_round={per_round}",
            f"sim.eval_every={rounds}",
            f"strategy.local.steps={steps}",
            f"seed={seed}",
            *extra,
        ]  # fmt: skip
    )


def compare(cfg: ExperimentConfig, updates: int, run_dir: Path) -> dict[str, float]:
    """Final accuracies of the simulation and of the reference loop for ``cfg``, in points."""
    summary = run_experiment(cfg, run_dir)
    (*_, last) = pfedhn_reference(
        cfg.data,
        cfg.strategy.local,
        updates,
        eval_every=updates,
        seed=cfg.seed,
        hnet=cfg.hnet,
        outer=cfg.strategy.outer,
    )
    row = {
        "simulation": 100 * summary.final_accuracy,
        "reference": 100 * last["accuracy"],
        "simulation_pooled": 100 * summary.final_accuracy_pooled,
        "reference_pooled": 100 * last["accuracy_pooled"],
    }
    return {**row, "difference": row["simulation"] - row["reference"],
            "difference_pooled": row["simulation_pooled"] - row["reference_pooled"]}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["pfedhn", "dirichlet"], choices=sorted(DATA_SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--updates", type=int, default=2000, help="client updates in each (rounds x per round)")
    parser.add_argument("--per-round", type=int, default=10, help="the simulation's clients a round")
    parser.add_argument("--steps", type=int, default=50, help="local steps of each update")
    parser.add_argument("--out", type=Path, help="append one JSON line per setting and seed here")
    parser.add_argument("--tiny", action="store_true", help="a few seconds on a data subset (CI)")
    parser.add_argument("overrides", nargs="*", help="key=value options of both runs, on top of pfedhn's defaults")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one core each, as a simulated client process has: run settings side by side
    extra = [*(TINY if args.tiny else []), *args.overrides]
    updates, per_round, steps = (4, 2, 2) if args.tiny else (args.updates, args.per_round, args.steps)
    for setting in args.settings:
        for seed in args.seeds:
            cfg = experiment(setting, seed, updates, per_round, steps, extra)
            with tempfile.TemporaryDirectory() as tmp:
                row = compare(cfg, updates, Path(tmp))
            print(
                f"{setting} seed {seed}, {updates} updates of {steps} steps ({per_round} a round in the simulation): "
                f"mean over clients simulation {row['simulation']:.2f}, reference {row['reference']:.2f}, "
                f"difference {row['difference']:+.2f} points; pooled {row['simulation_pooled']:.2f} vs "
                f"{row['reference_pooled']:.2f}, difference {row['difference_pooled']:+.2f}",
                flush=True,
            )
            if args.out:
                line = {"setting": setting, "seed": seed, "updates": updates, "per_round": per_round, "steps": steps,
                        "overrides": args.overrides}  # fmt: skip
                with args.out.open("a") as out:
                    out.write(json.dumps({**line, **row}) + "\n")


if __name__ == "__main__":
    main()
