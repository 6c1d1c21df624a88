"""FedAvg-FT's client: train as FedAvg does, then fine-tune a copy of the global model before
evaluating it (the fine-tuned copy is thrown away; the next round starts from the server's).

A baseline used throughout personalised FL, e.g. Yu, Bagdasaryan, Shmatikov, "Salvaging
Federated Learning by Local Adaptation", 2020. https://arxiv.org/abs/2002.04758
"""

from __future__ import annotations

import dataclasses

import torch

from clients.personal import Job, Routine, plain_train
from fedhyper import protocol
from fedhyper.algorithms import register_client
from fedhyper.training import train_local


def fine_tuned(job: Job, steps: int, lr: float) -> dict[str, torch.Tensor]:
    """The whole model (received over kept) after ``steps`` SGD steps at ``lr`` on the training split."""
    local = dataclasses.replace(job.local, lr=lr)
    tuned, _ = train_local(job.model, job.full(), job.data.x_train, job.data.y_train, local, job.generator, steps=steps)
    return tuned


def evaluation_weights(job: Job) -> dict[str, torch.Tensor]:
    lr = job.setting(protocol.ADAPT_LR) if protocol.ADAPT_LR in job.config else job.local.lr
    return fine_tuned(job, int(job.setting(protocol.ADAPT_STEPS)), lr)


register_client("fedavg_ft", Routine(plain_train, evaluation_weights))
