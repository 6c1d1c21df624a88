"""FedHyper's client: train as pFedHN-PC's clients do, adapt before evaluating.

Training is the plain routine: the generated body (or the whole generated model) over the head
this client keeps, trained jointly; the head stays in the node's state and never enters a reply.
Before an evaluation the client adapts its model with ``strategy.adapt_steps`` SGD steps on its
own training split, as FedAvg-FT's clients do (Yu, Bagdasaryan, Shmatikov, 2020,
https://arxiv.org/abs/2002.04758); the adapted copy is thrown away. 0 steps evaluate the model
as it is.

With ``strategy.shared_model`` the server sends two models packed as members, the generated one
and FedAvg's shared one: the client's local steps are split between them (the generated model
gets the odd one), each is trained by the plain routine, and both go back packed the same way.
An evaluation of two members is an ensemble (``clients/app.py``) of their averaged predicted
probabilities: the generated model adapted as above, the shared one fine-tuned as FedAvg-FT's
clients fine-tune theirs, with its own steps and learning rate (``strategy.shared_adapt_steps``,
``strategy.shared_adapt_lr``), weighed by ``strategy.ensemble_weight`` (the generated model's; equal by
default). With ``strategy.mutual_weight`` the two train side by side on the same
batches, each also pulled towards the other's predictions (``fedhyper.training.train_mutual``).
"""

from __future__ import annotations

import dataclasses

import torch

from clients.fedavg_ft import evaluation_weights as adapted_weights
from clients.fedavg_ft import fine_tuned
from clients.personal import Job, Routine, plain_train
from fedhyper import protocol
from fedhyper.algorithms import register_client
from fedhyper.training import train_mutual


def split_steps(steps: int, parts: int) -> list[int]:
    """``steps`` shared out over ``parts`` models, the first ones taking the remainder."""
    return [steps // parts + (k < steps % parts) for k in range(parts)]


def train(job: Job) -> tuple[dict[str, torch.Tensor], float]:
    """The plain routine on the generated model, or on each packed member with its share of the steps; with a
    mutual weight the members train side by side, distilling from each other (``train_mutual``)."""
    members = protocol.unpack_members(job.received)
    if members is None:
        return plain_train(job)
    if protocol.MUTUAL_WEIGHT in job.config and (weight := job.setting(protocol.MUTUAL_WEIGHT)) > 0:
        return mutual_train(job, members, weight)
    trained, losses = [], []
    for member, steps in zip(members, split_steps(job.local.steps, len(members)), strict=True):
        weights, loss = plain_train(
            dataclasses.replace(job, received=member, local=dataclasses.replace(job.local, steps=steps))
        )
        trained.append(weights)
        losses.append(loss)
    return protocol.pack_members(trained), sum(losses) / len(losses)


def mutual_train(job: Job, members: list[dict[str, torch.Tensor]], weight: float):
    """The generated model (over the head this client keeps) and the shared one trained by ``train_mutual``,
    with the same shares of the local steps as apart; the head is kept, the received parts go back packed."""
    generated = dataclasses.replace(job, received=members[0])
    shared = dataclasses.replace(job, received=members[1])
    (gen_weights, shared_weights), loss = train_mutual(
        job.model, [generated.full(), shared.full()], job.data.x_train, job.data.y_train, job.local,
        job.generator, split_steps(job.local.steps, 2), weight,
    )  # fmt: skip
    generated.keep_private(gen_weights)
    return protocol.pack_members([generated.shared(gen_weights), shared.shared(shared_weights)]), loss


def members_weights(job: Job, members: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """The generated model adapted with ``adapt_steps`` at ``local.lr``; the shared one fine-tuned with its own."""
    generated, shared = members
    adapted = adapted_weights(dataclasses.replace(job, received=generated))  # first: the generator's order
    steps, lr = int(job.setting(protocol.SHARED_ADAPT_STEPS)), job.setting(protocol.SHARED_ADAPT_LR)
    return [adapted, fine_tuned(dataclasses.replace(job, received=shared), steps, lr)]


def mixture(job: Job) -> list[float] | None:
    """The generated and the shared model's weights in the averaged prediction (``strategy.ensemble_weight``)."""
    if protocol.ENSEMBLE_WEIGHT not in job.config:
        return None
    weight = job.setting(protocol.ENSEMBLE_WEIGHT)
    return [weight, 1.0 - weight]


register_client("fedhyper", Routine(train, adapted_weights, members_weights, mixture))
