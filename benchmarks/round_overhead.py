"""Steady-state round time of the Flower/Ray simulation against the same work in one process.

    python -m benchmarks.round_overhead [--clients 20 --per-round 10 --rounds 12 --steps 50 --repeats 3]
    python -m benchmarks.round_overhead --clients 200 --per-round 10 --epochs 1

Both sides run pFedHN with the same data, clients per round and local steps (``--epochs E``:
the steps that take the median client through its training split E times). The
simulation runs with one client process at a time (``sim.client_cpus`` = all cores) so
that the ratio measures Flower's and Ray's overhead, not parallelism; it is also run with
one client per core to show what parallel clients buy; ``--flower-sweep`` adds a run one at
a time with Flower's own message sweep (``sim.sweep_interval=0``), to show what
``simulations/sweep.py`` buys. Round times come from the run's
``metrics.jsonl`` (rounds with an evaluation and the first two rounds are left out), with
the time the clients spent in their handlers (``compute-s``): the rest of a round is what
the server, Flower and Ray add.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics

from benchmarks.inprocess import inprocess_round_times
from benchmarks.simrun import run_simulation
from fedhyper.data import DataConfig, load_federated
from fedhyper.training import LocalTrainConfig

WARMUP = 2


def epoch_steps(data: DataConfig, epochs: float, batch_size: int) -> tuple[int, int]:
    """Local steps for ``epochs`` passes over the median client's training split, and that split's size."""
    fd = load_federated(data, seed=0)
    median = int(statistics.median(len(fd.split(c).train) for c in range(len(fd))))
    return max(1, math.ceil(epochs * median / batch_size)), median


def flower_round_times(
    clients: int, per_round: int, rounds: int, steps: int, subset: int, extra: list[str]
) -> list[float]:
    """Steady-state round times of ``python -m simulations.run`` with these options and ``extra`` overrides."""
    return flower_rounds(clients, per_round, rounds, steps, subset, extra)[0]


def flower_rounds(
    clients: int, per_round: int, rounds: int, steps: int, subset: int, extra: list[str]
) -> tuple[list[float], list[float]]:
    """As ``flower_round_times``, with the clients' summed handler time in each of those rounds."""
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
    kept = [r for r in range(1 + WARMUP, rounds + 1) if r not in evals and r - 1 in ends]
    compute = {r["round"]: r.get("train_client_compute_s", 0.0) for r in record.rows}
    return [ends[r] - ends[r - 1] for r in kept], [compute[r] for r in kept]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--epochs", type=float, default=0, help="set the steps from the clients' sizes instead")
    parser.add_argument("--subset", type=int, default=0, help="use only this many examples (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flower-sweep", action="store_true", help="also time Flower's own message sweep")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    data = DataConfig(num_clients=args.clients, subset=args.subset or None)
    local = LocalTrainConfig(steps=args.steps)
    if args.epochs:
        local.steps, median = epoch_steps(data, args.epochs, local.batch_size)
        print(f"{args.epochs:g} epoch(s) of the median client's {median} training examples: {local.steps} steps")

    rows = []
    for rep in range(args.repeats):
        plain = statistics.median(inprocess_round_times(data, args.per_round, args.rounds, local)[WARMUP:])
        sizes = (args.clients, args.per_round, args.rounds, local.steps, args.subset)
        serial_times, serial_compute = flower_rounds(*sizes, [f"sim.client_cpus={cores}"])
        serial = statistics.median(serial_times)
        parallel = statistics.median(flower_round_times(*sizes, ["sim.client_cpus=1"]))
        line = (
            f"repeat {rep + 1}: in-process {plain:.3f}s | flower 1 client at a time {serial:.3f}s "
            f"(x{serial / plain:.2f}; clients' handlers {statistics.median(serial_compute):.3f}s) | "
            f"flower {cores} at a time {parallel:.3f}s (x{parallel / plain:.2f})"
        )
        flower_sweep = float("nan")
        if args.flower_sweep:
            extra = [f"sim.client_cpus={cores}", "sim.sweep_interval=0"]
            flower_sweep = statistics.median(flower_round_times(*sizes, extra))
            line += f" | 1 at a time with Flower's own 0.1 s sweep {flower_sweep:.3f}s (x{flower_sweep / plain:.2f})"
        rows.append((plain, serial, parallel, flower_sweep))
        print(line, flush=True)
    ratio_serial = statistics.median(r[1] / r[0] for r in rows)
    ratio_parallel = statistics.median(r[2] / r[0] for r in rows)
    summary = (
        f"median over {args.repeats} repeats, {args.per_round} clients x {local.steps} steps per round: "
        f"flower/in-process = {ratio_serial:.2f} (same parallelism), {ratio_parallel:.2f} ({cores} client processes)"
    )
    if args.flower_sweep:
        summary += f", {statistics.median(r[3] / r[0] for r in rows):.2f} (same parallelism, Flower's own sweep)"
    print(summary)


if __name__ == "__main__":
    main()
