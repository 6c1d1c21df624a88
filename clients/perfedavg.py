"""Per-FedAvg's client (first-order variant): each step adapts on one batch with step size
alpha and moves the model by the gradient at the adapted point on a second batch. Before
evaluation a client adapts the received model with a few alpha-steps on its own data.

Fallah, Mokhtari, Ozdaglar. "Personalized Federated Learning with Theoretical Guarantees:
A Model-Agnostic Meta-Learning Approach". NeurIPS 2020. https://arxiv.org/abs/2002.07948
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from clients.personal import Job, Routine
from fedhyper import protocol
from fedhyper.algorithms import register_client
from fedhyper.models import apply
from fedhyper.training import batches, train_local


def _grads(job: Job, weights: dict[str, torch.Tensor], idx: torch.Tensor) -> tuple[list[torch.Tensor], float]:
    params = {n: w.detach().requires_grad_(True) for n, w in weights.items()}
    loss = nn.functional.cross_entropy(apply(job.model, params, job.data.x_train[idx]), job.data.y_train[idx])
    return list(torch.autograd.grad(loss, list(params.values()))), float(loss.detach())


def train(job: Job) -> tuple[dict[str, torch.Tensor], float]:
    """``local.steps`` meta-steps: w <- w − beta ∇f_D'(w − alpha ∇f_D(w)), beta = ``local.lr``."""
    alpha, beta = job.setting(protocol.INNER_LR), job.local.lr
    weights = {n: w.detach().clone() for n, w in job.full().items()}
    order = batches(len(job.data.y_train), job.local.batch_size, 2 * job.local.steps, job.generator)
    total = 0.0
    for _ in range(job.local.steps):
        inner, _ = _grads(job, weights, next(order))
        adapted = {n: w - alpha * g for (n, w), g in zip(weights.items(), inner, strict=True)}
        outer, loss = _grads(job, adapted, next(order))
        weights = {n: w - beta * g for (n, w), g in zip(weights.items(), outer, strict=True)}
        total += loss
    job.keep_private(weights)
    return job.shared(weights), total / job.local.steps


def evaluation_weights(job: Job) -> dict[str, torch.Tensor]:
    """The received model after ``adapt_steps`` plain SGD steps of size alpha on local data."""
    adapt = dataclasses.replace(job.local, lr=job.setting(protocol.INNER_LR), momentum=0.0, weight_decay=0.0)
    steps = int(job.setting(protocol.ADAPT_STEPS))
    tuned, _ = train_local(job.model, job.full(), job.data.x_train, job.data.y_train, adapt, job.generator, steps=steps)
    return tuned


register_client("perfedavg", Routine(train, evaluation_weights))
