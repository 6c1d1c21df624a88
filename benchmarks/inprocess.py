"""pFedHN rounds in one process with no Flower and no Ray: the reference for overheads.

The same library code the ClientApp and the strategy run (``fedhyper.training``,
``fedhyper.outer``), called directly, one client after another.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from fedhyper.data import DataConfig, load_federated
from fedhyper.hypernet import HyperNetConfig, PerTensorHyperNet
from fedhyper.models import ModelConfig, build_model, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig
from fedhyper.training import LocalTrainConfig, train_local


def inprocess_round_times(
    data: DataConfig, clients_per_round: int, rounds: int, local: LocalTrainConfig, seed: int = 0
) -> list[float]:
    """Wall time of each of ``rounds`` pFedHN rounds: generate, train every client in turn, step."""
    torch.set_num_threads(1)  # as one simulated client process has
    fd = load_federated(data, seed)
    model = build_model(ModelConfig(), fd.input_shape, fd.num_classes)
    trainer = HyperNetTrainer(
        PerTensorHyperNet(target_shapes(model), data.num_clients, HyperNetConfig()), OuterConfig()
    )
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        ids = sorted(rng.choice(data.num_clients, clients_per_round, replace=False).tolist())
        generated = trainer.generate(ids)
        trained: dict[str, list[torch.Tensor]] = {n: [] for n in generated}
        counts = []
        for b, cid in enumerate(ids):
            client = fd.client(cid)
            weights, _ = train_local(
                model, {n: w[b] for n, w in generated.items()}, client.x_train, client.y_train, local, gen
            )
            for n, w in weights.items():
                trained[n].append(w)
            counts.append(len(client.y_train))
        trainer.step(ids, {n: torch.stack(ws) for n, ws in trained.items()}, counts)
        times.append(time.perf_counter() - start)
    return times
