"""One batched hypernetwork update for K clients against K one-client updates.

    python -m benchmarks.hypernet_update [--clients 10 100 --target cifar10 --repeats 5]

Batched: one forward generates all K clients' weights, one ``autograd.grad`` with the K
deltas as ``grad_outputs`` and one optimiser step (``HyperNetTrainer.step``). Per-client:
the reference pFedHN loop, a forward, backward and step for each client in turn. A target is
pFedHN's CNN for a registered dataset's shape and classes (fedhyper.data.specs): "cifar10"
(3x32x32), the default, whose hypernetwork has about 12 million parameters, or "fmnist" (1x28x28),
about 8.7 million.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fedhyper.data import SPECS, dataset_info
from fedhyper.hypernet import HyperNetConfig, HyperNetwork
from fedhyper.models import ModelConfig, build_model, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig


def make_trainer(target: str, num_clients: int, device: torch.device) -> HyperNetTrainer:
    model = build_model(ModelConfig(), *dataset_info(target))
    hnet = HyperNetwork(target_shapes(model), num_clients, HyperNetConfig()).to(device)
    return HyperNetTrainer(hnet, OuterConfig())


def time_updates(trainer: HyperNetTrainer, ids: list[int], batched: bool) -> float:
    """Seconds for the hypernetwork work of one round of ``len(ids)`` client updates."""
    generated = trainer.generate(ids)
    trained = {n: w + 0.01 * torch.randn_like(w) for n, w in generated.items()}
    counts = [100] * len(ids)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    if batched:
        trainer.step(ids, trained, counts)
    else:
        for b, cid in enumerate(ids):
            trainer.step([cid], {n: w[b : b + 1] for n, w in trained.items()}, counts[:1])
    sync()
    return time.perf_counter() - start


def measure(target: str, k: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of one batched and of K one-client updates, and the median ratio."""
    trainer = make_trainer(target, max(k, 2) * 2, device)
    ids = list(range(k))
    time_updates(trainer, ids, batched=True)  # warm-up
    batched_s, single_s, ratios = [], [], []
    for _ in range(repeats):
        b = time_updates(trainer, ids, batched=True)
        s = time_updates(trainer, ids, batched=False)
        batched_s.append(b)
        single_s.append(s)
        ratios.append(s / b)
    return {
        "clients": k,
        "params_m": sum(p.numel() for p in trainer.hnet.parameters()) / 1e6,
        "batched_s": statistics.median(batched_s),
        "per_client_s": statistics.median(single_s),
        "ratio": statistics.median(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--target", choices=sorted(SPECS), default="cifar10")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    for k in args.clients:
        r = measure(args.target, k, args.repeats, device)
        print(
            f"{k} clients, {args.target} target, hypernet {r['params_m']:.1f}M params on {device}: "
            f"batched {r['batched_s']:.3f}s, per-client {r['per_client_s']:.3f}s, "
            f"median ratio {r['ratio']:.1f}x over {args.repeats} repeats",
            flush=True,
        )


if __name__ == "__main__":
    main()
