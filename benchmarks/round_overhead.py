"""Steady-state round time of the Flower/Ray simulation against the same work in one process.

    python -m benchmarks.round_overhead [--clients 20 --per-round 10 --rounds 12 --steps 50 --repeats 3]

Both sides run pFedHN with the same data, clients per round and local steps. The
simulation runs with one client process at a time (``sim.client_cpus`` = all cores) so
that the ratio measures Flower's and Ray's overhead, not parallelism; it is also run with
one client per core to show what parallel clients buy. Round times come from the run's
``metrics.jsonl`` (rounds with an evaluation and the first two rounds are left out).
"""

from __future__ import annotations

import argparse
import os
import statistics

from benchmarks.inprocess import inprocess_round_times
from benchmarks.simrun import run_simulation
from fedhyper.data import DataConfig
from fedhyper.training import LocalTrainConfig

WARMUP = 2


def flower_round_times(
    clients: int, per_round: int, rounds: int, steps: int, subset: int, extra: list[str]
) -> list[float]:
    """Steady-state round times of ``python -m simulations.run`` with these options and ``extra`` overrides."""
    overrides = [
        f"data.num_clients={clients}",
        f"sim.clients_per_round={per_round}",
        f"sim.num_rounds={rounds}",
        f"sim.eval_every={rounds + 1}",
        f"strategy.local.steps={steps}",
        *extra,
    ]
    if subset:
        overrides.append(f"data.subset={subset}")
    record = run_simulation(overrides)
    ends, evals = record.round_ends(), record.eval_rounds()
    return [ends[r] - ends[r - 1] for r in range(1 + WARMUP, rounds + 1) if r not in evals and r - 1 in ends]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--subset", type=int, default=0, help="use only this many examples (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    data = DataConfig(num_clients=args.clients, subset=args.subset or None)
    local = LocalTrainConfig(steps=args.steps)

    rows = []
    for rep in range(args.repeats):
        plain = statistics.median(inprocess_round_times(data, args.per_round, args.rounds, local)[WARMUP:])
        sizes = (args.clients, args.per_round, args.rounds, args.steps, args.subset)
        serial = statistics.median(flower_round_times(*sizes, [f"sim.client_cpus={cores}"]))
        parallel = statistics.median(flower_round_times(*sizes, ["sim.client_cpus=1"]))
        rows.append((plain, serial, parallel))
        print(
            f"repeat {rep + 1}: in-process {plain:.3f}s | flower 1 client at a time {serial:.3f}s "
            f"(x{serial / plain:.2f}) | flower {cores} at a time {parallel:.3f}s (x{parallel / plain:.2f})",
            flush=True,
        )
    ratio_serial = statistics.median(s / p for p, s, _ in rows)
    ratio_parallel = statistics.median(q / p for p, _, q in rows)
    print(
        f"median over {args.repeats} repeats, {args.per_round} clients x {args.steps} steps per round: "
        f"flower/in-process = {ratio_serial:.2f} (same parallelism), {ratio_parallel:.2f} ({cores} client processes)"
    )


if __name__ == "__main__":
    main()
