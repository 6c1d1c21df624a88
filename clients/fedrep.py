"""FedRep's client: fit the kept head with the received body frozen, then the body with the
new head frozen; only the body goes back.

Collins, Hassani, Mokhtari, Shakkottai. "Exploiting Shared Representations for Personalized
Federated Learning". ICML 2021. https://arxiv.org/abs/2102.07078
"""

from __future__ import annotations

import torch

from clients.personal import Job, Routine, plain_evaluation_weights
from fedhyper import protocol
from fedhyper.aggregate import without
from fedhyper.algorithms import register_client
from fedhyper.training import train_local


def train(job: Job) -> tuple[dict[str, torch.Tensor], float]:
    weights = job.full()
    head = list(without(weights, job.received))
    x, y = job.data.x_train, job.data.y_train
    head_steps = int(job.setting(protocol.HEAD_STEPS))
    weights, _ = train_local(job.model, weights, x, y, job.local, job.generator, trainable=head, steps=head_steps)
    weights, loss = train_local(job.model, weights, x, y, job.local, job.generator, trainable=list(job.received))
    job.keep_private(weights)
    return job.shared(weights), loss


register_client("fedrep", Routine(train, plain_evaluation_weights))
