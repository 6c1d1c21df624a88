"""Time to a mean personalised accuracy: fedhyper's default simulation against one-client-per-step pFedHN.

    python -m benchmarks.time_to_accuracy [--target 0.95]          # the default setting (~20 min on 2 cores)
    python -m benchmarks.time_to_accuracy --tiny                   # seconds; shows it still works

(a) ``python -m simulations.run`` with its defaults (a Flower simulation on Ray: K clients a
round, generated in one batched forward and folded in with one batched backward); its
times are the ServerApp's clock from ``metrics.jsonl``, evaluations included.
(b) the pFedHN reference protocol in one process (``benchmarks.inprocess.pfedhn_reference``):
one client per hypernetwork step, the same data, hypernetwork, optimisers and local
training, torch using every core; evaluated every ``--ref-eval-every`` steps with the clock
stopped. Both run the same number of client updates (rounds x clients per round), and the
accuracies are compared wherever both evaluated after the same number of updates.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import torch

from benchmarks.inprocess import pfedhn_reference
from benchmarks.simrun import run_simulation
from fedhyper.config import SimConfig
from fedhyper.data import DataConfig
from fedhyper.training import LocalTrainConfig

TINY = {"num_clients": 6, "subset": 1500, "steps": 2, "rounds": 6, "per_round": 2, "eval_every": 3, "target": 0.0}


@dataclass
class Curve:
    """Mean accuracy after a number of client updates, at a time; and the run's start-up cost."""

    points: list[tuple[int, float, float]]  # (updates, elapsed_s, accuracy)
    startup_s: float = 0.0

    def time_to(self, target: float) -> float | None:
        return next((t for _, t, a in self.points if a >= target), None)

    def accuracy_at(self) -> dict[int, float]:
        return {u: a for u, _, a in self.points}


def simulation_curve(args: argparse.Namespace) -> Curve:
    """The default simulation, with only the options this benchmark was given changed."""
    overrides = [
        f"{key}={value}"
        for key, value in (
            ("data.num_clients", args.num_clients),
            ("data.subset", args.subset),
            ("strategy.local.steps", args.steps),
            ("sim.num_rounds", args.rounds),
            ("sim.clients_per_round", args.per_round),
            ("sim.eval_every", args.eval_every),
            ("seed", args.seed),
        )
        if value is not None
    ]
    record = run_simulation(overrides)
    per_round = args.per_round or SimConfig.clients_per_round
    points = [(r["round"] * per_round, r["elapsed_s"], r["accuracy"]) for r in record.rows if "accuracy" in r]
    return Curve(points, startup_s=record.command_s - record.summary["wall_time_s"])


def reference_curve(args: argparse.Namespace, updates: int) -> Curve:
    torch.set_num_threads(os.cpu_count() or 1)  # one process, as pFedHN's code runs: every core
    data = DataConfig(num_clients=args.num_clients or DataConfig.num_clients, subset=args.subset)
    local = LocalTrainConfig(steps=args.steps or LocalTrainConfig.steps)
    rows = pfedhn_reference(data, local, updates, args.ref_eval_every, args.seed or 0, args.ref_budget_s)
    return Curve([(r["updates"], r["elapsed_s"], r["accuracy"]) for r in rows])


def report(sim: Curve, ref: Curve, target: float) -> None:
    fmt = lambda t: "not reached" if t is None else f"{t:.0f}s"  # noqa: E731
    t_sim, t_ref = sim.time_to(target), ref.time_to(target)
    print(f"simulation: {target:.0%} after {fmt(t_sim)} (ServerApp clock; start-up {sim.startup_s:.0f}s more)")
    print(f"one client per step: {target:.0%} after {fmt(t_ref)} (training only, evaluations not counted)")
    if t_sim is not None and t_ref is not None and t_ref > 0:
        print(f"time to {target:.0%}: simulation / one-client-per-step = {t_sim / t_ref:.2f}")
    ref_acc = ref.accuracy_at()
    common = [(u, a, ref_acc[u]) for u, _, a in sim.points if u in ref_acc]
    for u, a, r in common:
        print(f"  after {u} client updates: simulation {a:.4f}, one client per step {r:.4f}, difference {a - r:+.4f}")
    if common:
        u, a, r = common[-1]
        print(f"at the same number of client updates ({u}): accuracy difference {100 * (a - r):+.2f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--num-clients", type=int, help="default: data.num_clients")
    parser.add_argument("--subset", type=int, help="use only this many pooled examples (default: all)")
    parser.add_argument("--steps", type=int, help="local steps; default: strategy.local.steps")
    parser.add_argument("--rounds", type=int, help="default: sim.num_rounds")
    parser.add_argument("--per-round", type=int, help="default: sim.clients_per_round")
    parser.add_argument("--eval-every", type=int, help="rounds; default: sim.eval_every")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--ref-eval-every", type=int, default=25, help="one-client steps between evaluations")
    parser.add_argument("--ref-budget-s", type=float, default=3600.0, help="stop the reference after this training")
    parser.add_argument("--tiny", action="store_true", help="a few seconds on a data subset (CI)")
    args = parser.parse_args()
    if args.tiny:
        for key, value in TINY.items():
            if key != "target" or args.target == parser.get_default("target"):
                setattr(args, key, value)
        args.ref_eval_every = min(args.ref_eval_every, TINY["per_round"] * TINY["eval_every"])
    updates = (args.rounds or SimConfig.num_rounds) * (args.per_round or SimConfig.clients_per_round)
    sim = simulation_curve(args)
    curve = ", ".join(f"{u}: {a:.4f} at {t:.0f}s" for u, t, a in sim.points)
    print(f"simulation done, accuracy after client updates: {curve}", flush=True)
    ref = reference_curve(args, updates)
    print(f"one client per step done: {ref.points[-1][0]} updates, final accuracy {ref.points[-1][2]:.4f}", flush=True)
    report(sim, ref, args.target)


if __name__ == "__main__":
    main()
