"""Ditto's client: a FedAvg step on the global model, and a personal model that stays here,
trained on the loss plus (lambda / 2) ||v − w_global||². The personal model is evaluated.

Li, Hu, Beirami, Smith. "Ditto: Fair and Robust Federated Learning Through
Personalization". ICML 2021. https://arxiv.org/abs/2012.04221
"""

from __future__ import annotations

import torch

from clients.personal import Job, Routine
from fedhyper import protocol
from fedhyper.algorithms import register_client
from fedhyper.training import train_local

PERSONAL = "ditto-personal"  # Context.state key of the personal model v


def train(job: Job) -> tuple[dict[str, torch.Tensor], float]:
    x, y = job.data.x_train, job.data.y_train
    global_model = job.full()
    trained, loss = train_local(job.model, global_model, x, y, job.local, job.generator)
    personal = job.kept(PERSONAL) or global_model
    personal, _ = train_local(
        job.model,
        personal,
        x,
        y,
        job.local,
        job.generator,
        anchor=global_model,
        mu=job.setting(protocol.PROX_MU),
        steps=int(job.setting(protocol.PERSONAL_STEPS)),
    )
    job.keep(PERSONAL, personal)
    job.keep_private(trained)
    return job.shared(trained), loss


def evaluation_weights(job: Job) -> dict[str, torch.Tensor]:
    """The personal model; the global one for a client that has not trained yet."""
    return job.kept(PERSONAL) or job.full()


register_client("ditto", Routine(train, evaluation_weights))
