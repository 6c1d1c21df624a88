"""pFedHN in one process with no Flower and no Ray: the reference for overheads and speed.

The same library code the ClientApp and the strategy run (``fedhyper.training``,
``fedhyper.outer``), called directly, one client after another: rounds of K clients
(``inprocess_round_times``) and the pFedHN reference protocol of one client per
hypernetwork step (``pfedhn_reference``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from fedhyper.data import DataConfig, load_federated
from fedhyper.hypernet import HyperNetConfig, HyperNetwork
from fedhyper.models import ModelConfig, build_model, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig
from fedhyper.training import LocalTrainConfig, evaluate, train_local


def inprocess_round_times(
    data: DataConfig,
    clients_per_round: int,
    rounds: int,
    local: LocalTrainConfig,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[float]:
    """Wall time of each of ``rounds`` pFedHN rounds: generate, train every client in turn, step.

    On ``device`` both the hypernetwork and the clients' training run there, as in a
    simulation with ``device=cuda`` and ``sim.client_gpus`` > 0.
    """
    torch.set_num_threads(1)  # as one simulated client process has
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fd = load_federated(data, seed)
    model = build_model(ModelConfig(), fd.input_shape, fd.num_classes).to(device)
    hypernet = HyperNetwork(target_shapes(model), data.num_clients, HyperNetConfig()).to(device)
    trainer = HyperNetTrainer(hypernet, OuterConfig())
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
            x, y = client.x_train.to(device), client.y_train.to(device)
            weights, _ = train_local(model, {n: w[b] for n, w in generated.items()}, x, y, local, gen)
            for n, w in weights.items():
                trained[n].append(w)
            counts.append(len(client.y_train))
        trainer.step(ids, {n: torch.stack(ws) for n, ws in trained.items()}, counts)
        sync()
        times.append(time.perf_counter() - start)
    return times


def _accuracies(trainer: HyperNetTrainer, model: torch.nn.Module, fd, chunk: int = 256) -> dict[str, float]:
    """``accuracy``: mean over clients (those with test examples) of each one's accuracy on its own
    test split; ``accuracy_pooled``: all clients' test examples together."""
    accs, correct, total = [], 0.0, 0
    for start in range(0, len(fd), chunk):
        ids = list(range(start, min(start + chunk, len(fd))))
        generated = trainer.generate(ids)
        for b, cid in enumerate(ids):
            client = fd.client(cid)
            if len(client.y_test):
                acc = evaluate(model, {n: w[b] for n, w in generated.items()}, client.x_test, client.y_test)[1]
                accs.append(acc)
                correct, total = correct + acc * len(client.y_test), total + len(client.y_test)
    return {"accuracy": float(np.mean(accs)), "accuracy_pooled": correct / total}


def pfedhn_reference(
    data: DataConfig,
    local: LocalTrainConfig,
    updates: int,
    eval_every: int,
    seed: int = 0,
    budget_s: float = float("inf"),
    hnet: HyperNetConfig | None = None,
    outer: OuterConfig | None = None,
) -> list[dict[str, float]]:
    """pFedHN as its reference code runs it: one uniformly drawn client per hypernetwork step.

    Every ``eval_every`` steps all clients are evaluated with the clock stopped, so the
    times are training time only. Stops after ``updates`` steps or ``budget_s`` seconds of
    training. Returns one row per evaluation: ``updates``, ``elapsed_s``, ``accuracy`` (mean over
    clients) and ``accuracy_pooled``.
    """
    fd = load_federated(data, seed)
    model = build_model(ModelConfig(), fd.input_shape, fd.num_classes)
    torch.manual_seed(seed)  # the same initial hypernetwork as strategies.pfedhn.build
    hypernet = HyperNetwork(target_shapes(model), data.num_clients, hnet or HyperNetConfig())
    trainer = HyperNetTrainer(hypernet, outer or OuterConfig())
    rng = np.random.default_rng(seed)
    rows = [{"updates": 0, "elapsed_s": 0.0, **_accuracies(trainer, model, fd)}]
    elapsed = 0.0
    for step in range(1, updates + 1):
        start = time.perf_counter()
        cid = int(rng.integers(data.num_clients))
        client = fd.client(cid)
        generated = trainer.generate([cid])
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        weights, _ = train_local(
            model, {n: w[0] for n, w in generated.items()}, client.x_train, client.y_train, local, gen
        )
        trainer.step([cid], {n: w.unsqueeze(0) for n, w in weights.items()}, [max(len(client.y_train), 1)])
        elapsed += time.perf_counter() - start
        if step % eval_every == 0 or step == updates or elapsed >= budget_s:
            rows.append({"updates": step, "elapsed_s": elapsed, **_accuracies(trainer, model, fd)})
        if elapsed >= budget_s:
            break
    return rows
