"""How many in-process runs one machine holds side by side: a pFedHN round's time alone and with K at once.

    python -m benchmarks.side_by_side --device cuda --jobs 4 8 --out side_by_side.json   # on a GPU machine
    python -m benchmarks.side_by_side --device cpu --jobs 2 --rounds 3                     # anywhere

A grid (``simulations.compare ... engine=inprocess jobs=K``) runs K experiments in K spawned
processes, one torch thread each. This times what each of them does a round, the pFedHN round of
``benchmarks.inprocess`` (generate, train ``--per-round`` clients for ``--steps`` steps in turn, step
the hypernetwork): first one process alone, then K processes started together, each reporting the
median of its rounds after the first (the first pays for CUDA's and the allocator's warm-up). The
figures are each process's seconds a round; K divided by their median is the machine's rounds a second.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics

from benchmarks.inprocess import inprocess_round_times
from fedhyper.data import DataConfig
from fedhyper.training import LocalTrainConfig


def seconds_per_round(device: str, rounds: int, per_round: int, steps: int, data_root: str | None) -> float:
    """The median of ``rounds`` pFedHN rounds' times after the first, in this process."""
    data = DataConfig() if data_root is None else DataConfig(root=data_root)
    times = inprocess_round_times(data, per_round, rounds + 1, LocalTrainConfig(steps=steps), 0, device)
    return statistics.median(times[1:])


def _report(queue, *args) -> None:  # a spawned process's entry point: its median, back to the parent
    queue.put(seconds_per_round(*args))


def side_by_side(jobs: int, *args) -> list[float]:
    """Each of ``jobs`` processes' seconds a round, all started together, sorted."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    processes = [ctx.Process(target=_report, args=(queue, *args)) for _ in range(jobs)]
    for p in processes:
        p.start()
    figures = sorted(queue.get() for _ in processes)
    for p in processes:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a benchmark process exited with {p.exitcode}")
    return figures


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the clients train and the hypernet steps")
    parser.add_argument("--jobs", type=int, nargs="+", default=[2], help="processes side by side, one figure each")
    parser.add_argument("--rounds", type=int, default=4, help="rounds timed per process, after one warm-up round")
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--data-root", default=None, help="Fashion-MNIST's IDX folder, where not the default")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    common = (args.device, args.rounds, args.per_round, args.steps, args.data_root)
    alone = seconds_per_round(*common)
    result: dict[str, object] = {"device": args.device, "alone_s_per_round": alone}
    print(f"{args.device}: one process alone {alone:.3f} s a round", flush=True)
    for jobs in args.jobs:
        each = side_by_side(jobs, *common)
        median = statistics.median(each)
        result[f"side_by_side_{jobs}"] = {"s_per_round": each, "median": median, "rounds_per_s": jobs / median}
        print(f"{args.device}: {jobs} side by side {min(each):.3f}-{max(each):.3f} s a round each, median "
              f"{median:.3f} ({median / alone:.2f}x alone); {jobs / median:.2f} rounds/s in all "
              f"against {1 / alone:.2f} alone", flush=True)  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
