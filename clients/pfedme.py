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


def _local_round(job: Job) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
    """A round's local steps from the received w (Algorithm 1): each batch's θ, then w moved towards it.
    Returns the last θ, the local w and the mean loss."""
    lam, lr = job.setting(protocol.PROX_MU), job.setting(protocol.INNER_LR)
    k = int(job.setting(protocol.INNER_STEPS))
    eta = job.local.lr
    w = {n: t.detach().clone() for n, t in job.full().items()}
    theta, total = dict(w), 0.0
    for idx in batches(len(job.data.y_train), job.local.batch_size, job.local.steps, job.generator):
        theta, loss = _personal_model(job, theta, w, idx, lam, lr, k)
        w = {n: w[n] - eta * lam * (w[n] - theta[n]) for n in w}
        total += loss
    return theta, w, total / job.local.steps


def train(job: Job) -> tuple[dict[str, torch.Tensor], float]:
    theta, w, loss = _local_round(job)
    job.keep(PERSONAL, theta)
    job.keep_private(w)
    return job.shared(w), loss


def evaluation_weights(job: Job) -> dict[str, torch.Tensor]:
    """The personal model θ of the client's last training round (the received w for one that has not trained).

    With ``strategy.personalize_at_eval``, θ of a local round run now from the received w, nothing kept
    or sent: pFedMe's Algorithm 1 has every client run its round, sampled or not, so its evaluated θ is
    never older than the current w; here only sampled clients train.
    """
    if job.config.get(protocol.PERSONALIZE_AT_EVAL):
        return _local_round(job)[0]
    return job.kept(PERSONAL) or job.full()


register_client("pfedme", Routine(train, evaluation_weights))
