"""Every GPU figure in one command, written to one JSON file.

    python -m benchmarks.gpu --out gpu.json [--data-root DIR]   # on a machine with CUDA
    python -m benchmarks.gpu --tiny --out gpu.json               # seconds, on any machine (CI)

1. batched vs per-client hypernetwork update for 10 and 100 clients (``benchmarks.hypernet_update``);
2. a round of ``--per-round`` (50) clients: the Flower/Ray simulation against the same client
   work in one process (``benchmarks.round_overhead``), both with the clients training on the GPU
   (``sim.client_gpus``) and the hypernetwork there (``device=cuda``);
5. the same simulation on the CPU alone, and the GPU's speed-up over it.

Without CUDA only the CPU parts run (``cuda`` is false in the JSON and the GPU figures are
null), so the script itself is tested anywhere. A GPU machine without network access needs
Fashion-MNIST's four IDX files in a folder of the working tree, named by ``--data-root``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from benchmarks.hypernet_update import measure as measure_hypernet
from benchmarks.inprocess import inprocess_round_times
from benchmarks.round_overhead import WARMUP, flower_round_times
from fedhyper.data import DataConfig
from fedhyper.training import LocalTrainConfig


def machine() -> dict[str, object]:
    cuda = torch.cuda.is_available()
    return {
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
    }


def round_figures(args: argparse.Namespace, cuda: bool) -> dict[str, float | None]:
    """Median steady-state round times: in-process and simulated on the GPU, simulated on the CPU."""
    sizes = (args.clients, args.per_round, args.rounds, args.steps, args.subset)
    common = [f"data.root={args.data_root}"] if args.data_root else []
    cpu = statistics.median(flower_round_times(*sizes, [*common, "device=cpu", "sim.client_cpus=1"]))
    out: dict[str, float | None] = {"flower_cpu_s": cpu, "flower_gpu_s": None, "inprocess_gpu_s": None}
    if cuda:
        gpu_opts = [*common, "device=cuda", f"sim.client_gpus={args.client_gpus}", "sim.client_cpus=1"]
        out["flower_gpu_s"] = statistics.median(flower_round_times(*sizes, gpu_opts))
        data = DataConfig(num_clients=args.clients, subset=args.subset or None, root=args.data_root)
        times = inprocess_round_times(data, args.per_round, args.rounds, LocalTrainConfig(steps=args.steps), 0, "cuda")
        out["inprocess_gpu_s"] = statistics.median(times[WARMUP:])
        out["flower_over_inprocess_gpu"] = out["flower_gpu_s"] / out["inprocess_gpu_s"]
        out["gpu_speedup_over_cpu"] = cpu / out["flower_gpu_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    parser.add_argument("--data-root", help="a folder with Fashion-MNIST's IDX files (data.root)")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--subset", type=int, default=0)
    parser.add_argument("--client-gpus", type=float, default=0.125, help="sim.client_gpus: 8 clients share the GPU")
    parser.add_argument("--hypernet-clients", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CI)")
    args = parser.parse_args()
    if args.tiny:
        args.clients, args.per_round, args.rounds, args.steps, args.subset = 4, 2, 4, 2, 1500
        args.hypernet_clients, args.repeats = [3], 1
    info = machine()
    start = time.monotonic()
    devices = ["cpu", "cuda"] if info["cuda"] else ["cpu"]
    figures: dict[str, object] = {"machine": info, "args": {k: v for k, v in vars(args).items() if k != "out"}}
    figures["hypernet_update"] = {
        dev: [measure_hypernet("cifar10" if not args.tiny else "fmnist", k, args.repeats, torch.device(dev))
              for k in args.hypernet_clients]
        for dev in devices
    }  # fmt: skip
    print(json.dumps(figures["hypernet_update"]), flush=True)
    figures["round"] = round_figures(args, bool(info["cuda"]))
    figures["seconds"] = time.monotonic() - start
    args.out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures["round"]))
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
