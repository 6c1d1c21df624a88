"""pFedMe's client: for each batch, solve for a personal model θ ≈ argmin f(θ) + (λ/2)||θ − w||²
with a few gradient steps, then move the local model w towards it; θ is evaluated.

Dinh, Tran, Nguyen. "Personalized Federated Learning with Moreau Envelopes". NeurIPS 2020.
https://arxiv.org/abs/2006.08848
"""

from __future__ import annotations

import torch
from torch import nn

from clients.personal import Job, Routine
from fedhyper import protocol
from fedhyper.algorithms import register_client
from fedhyper.models import apply
from fedhyper.training import batches

PERSONAL = "pfedme-personal"  # Context.state key of the personal model θ


def _personal_model(job: Job, theta, w, idx, lam: float, lr: float, steps: int) -> tuple[dict, float]:
    """``steps`` gradient steps on f(θ; batch) + (λ/2)||θ − w||², starting from θ."""
    x, y = job.data.x_train[idx], job.data.y_train[idx]
    for _ in range(steps):
        params = {n: t.detach().requires_grad_(True) for n, t in theta.items()}
        fit = nn.functional.cross_entropy(apply(job.model, params, x), y)
        loss = fit + lam / 2 * sum(((params[n] - w[n]) ** 2).sum() for n in params)
        grads = torch.autograd.grad(loss, list(params.values()))
        theta = {n: t.detach() - lr * g for (n, t), g in zip(params.items(), grads, strict=True)}
    return theta, float(fit.detach())


def train(job: Job) -> tuple[dict[str, torch.Tensor], float]:
    lam, lr = job.setting(protocol.PROX_MU), job.setting(protocol.INNER_LR)
    k = int(job.setting(protocol.INNER_STEPS))
    eta = job.local.lr
    w = {n: t.detach().clone() for n, t in job.full().items()}
    theta, total = dict(w), 0.0
    for idx in batches(len(job.data.y_train), job.local.batch_size, job.local.steps, job.generator):
        theta, loss = _personal_model(job, theta, w, idx, lam, lr, k)
        w = {n: w[n] - eta * lam * (w[n] - theta[n]) for n in w}
        total += loss
    job.keep(PERSONAL, theta)
    job.keep_private(w)
    return job.shared(w), total / job.local.steps


def evaluation_weights(job: Job) -> dict[str, torch.Tensor]:
    """The personal model θ; the received one for a client that has not trained yet."""
    return job.kept(PERSONAL) or job.full()


register_client("pfedme", Routine(train, evaluation_weights))
