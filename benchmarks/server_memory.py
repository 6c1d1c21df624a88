"""Peak memory of the pFedHN server with few and with many clients.

    python -m benchmarks.server_memory [--clients 100 10000 --per-round 100 --max-embedding-dim 32]

Each size runs in a fresh process: build the hypernetwork for N clients and its optimiser,
then run rounds of ``--per-round`` clients (generate, one batched update from synthetic
trained weights). Reported: the process's peak resident memory, the same after the imports
alone (the floor every size pays), and the bytes of server state (parameters and optimiser
buffers). By default the embedding size is the library's (pFedHN's rule 1 + N/4, capped at
``hnet.max_embedding_dim`` = 64); ``--max-embedding-dim 0`` lifts the cap.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch

from fedhyper.hypernet import HyperNetConfig, HyperNetwork
from fedhyper.models import ModelConfig, build_model, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(num_clients: int, per_round: int, rounds: int, max_dim: int | None) -> dict[str, float]:
    floor = peak_rss_mb()
    model = build_model(ModelConfig(), (1, 28, 28), 10)
    cfg = HyperNetConfig() if max_dim is None else HyperNetConfig(max_embedding_dim=max_dim or None)
    hnet = HyperNetwork(target_shapes(model), num_clients, cfg)
    trainer = HyperNetTrainer(hnet, OuterConfig())
    gen = torch.Generator().manual_seed(0)
    for _ in range(rounds):
        ids = torch.randperm(num_clients, generator=gen)[:per_round].sort().values.tolist()
        weights = trainer.generate(ids)
        trainer.step(ids, {n: w + 0.01 for n, w in weights.items()}, [100] * len(ids))
    state = sum(p.numel() * p.element_size() for p in hnet.parameters())
    state += sum(
        t.numel() * t.element_size() for s in trainer.optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    )
    return {
        "clients": num_clients,
        "embedding_dim": hnet.conditioner.table.embedding_dim,
        "peak_rss_mb": peak_rss_mb(),
        "floor_rss_mb": floor,
        "state_mb": state / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-embedding-dim", type=int, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.clients[0], args.per_round, args.rounds, args.max_embedding_dim)))
        return
    rows = []
    for n in args.clients:
        cmd = [sys.executable, "-m", "benchmarks.server_memory", "--child", "--clients", str(n)]
        cmd += ["--per-round", str(min(args.per_round, n)), "--rounds", str(args.rounds)]
        if args.max_embedding_dim is not None:
            cmd += ["--max-embedding-dim", str(args.max_embedding_dim)]
        rows.append(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
        r = rows[-1]
        print(
            f"{r['clients']} clients (embedding dim {r['embedding_dim']}): peak RSS {r['peak_rss_mb']:.0f} MB "
            f"(imports alone {r['floor_rss_mb']:.0f} MB), server state {r['state_mb']:.1f} MB",
            flush=True,
        )
    first, last = rows[0], rows[-1]
    rss, state = last["peak_rss_mb"] / first["peak_rss_mb"], last["state_mb"] / first["state_mb"]
    print(f"{last['clients']} vs {first['clients']} clients: peak RSS ratio {rss:.2f}, state ratio {state:.2f}")


if __name__ == "__main__":
    main()
