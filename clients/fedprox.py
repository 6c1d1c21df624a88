"""FedProx's client: local SGD on the loss plus (mu / 2) ||w − w_global||².

Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith. "Federated Optimization in Heterogeneous
Networks". MLSys 2020. https://arxiv.org/abs/1812.06127
"""

from __future__ import annotations

import torch

from clients.personal import Job, Routine, plain_evaluation_weights
from fedhyper import protocol
from fedhyper.algorithms import register_client
from fedhyper.training import train_local


def train(job: Job) -> tuple[dict[str, torch.Tensor], float]:
    trained, loss = train_local(
        job.model,
        job.full(),
        job.data.x_train,
        job.data.y_train,
        job.local,
        job.generator,
        anchor=job.received,
        mu=job.setting(protocol.PROX_MU),
    )
    job.keep_private(trained)
    return job.shared(trained), loss


register_client("fedprox", Routine(train, plain_evaluation_weights))
