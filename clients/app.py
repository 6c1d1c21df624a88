"""The ClientApp: train the weights it is sent on local data, evaluate them, describe itself.

The server's config names the algorithm (``protocol.ALGORITHM``); the routine its client module
registered (``clients/<algorithm>.py``, in ``fedhyper.algorithms``), or the plain one
in ``clients/personal.py``, trains and picks the weights to evaluate. Whatever the server does
not send, the client keeps in its Context state and never returns. Each reply names the client by its stable id so the
server never relies on transport node ids.
"""

from __future__ import annotations

import time

import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from clients import (  # noqa: F401  (each algorithm's module registers its client side)
    ditto,
    faults,
    fedavg_ft,
    fedhyper,
    fedprox,
    fedrep,
    pefll,
    perfedavg,
    pfedme,
    runtime,
)
from clients.personal import PLAIN, Job, Routine
from fedhyper import protocol
from fedhyper.algorithms import ALGORITHMS
from fedhyper.training import LocalTrainConfig, evaluate, evaluate_ensemble

app = ClientApp()


@app.query()
def describe(msg: Message, context: Context) -> Message:
    """Tell the server which client this node is and how much it trains on."""
    cid = runtime.client_id(context)
    data, _, _ = runtime.client_data(msg.content[protocol.CONFIG], cid, context.node_config)
    reply = protocol.metrics(**{protocol.CLIENT_ID: cid, protocol.NUM_TRAIN_EXAMPLES: len(data.y_train)})
    return Message(RecordDict({protocol.METRICS: reply}), reply_to=msg)


# Queries beyond describe (PeFLL's descriptor and its gradient), as their algorithms registered them.
for _action, _handler in ALGORITHMS.queries().items():
    app.query(_action)(_handler)


def _job(msg: Message, context: Context) -> tuple[Job, Routine]:
    """This round's job and the routine the server asked for."""
    cid = runtime.client_id(context)
    config: ConfigRecord = msg.content[protocol.CONFIG]
    routine = ALGORITHMS.routine(str(config.get(protocol.ALGORITHM, "")), PLAIN)
    data, input_shape, n_classes = runtime.client_data(config, cid, context.node_config)
    job = Job(
        cid=cid,
        model=runtime.target_model(config, input_shape, n_classes, cid),
        data=data,
        config=config,
        local=protocol.decode(LocalTrainConfig, protocol.LOCAL_PREFIX, config),
        received=runtime.received_weights(msg),
        state=context.state,
        generator=runtime.generator(config, cid),
        device=runtime.device(),
        input_shape=input_shape,
        num_classes=n_classes,
    )
    return job, routine


@app.train()
def train(msg: Message, context: Context) -> Message:
    start = time.perf_counter()
    faults.before_training(msg.content[protocol.CONFIG])
    job, routine = _job(msg, context)
    shared, loss = routine.train(job)
    reply = RecordDict(
        {
            protocol.ARRAYS: protocol.weights_to_record(faults.corrupt(job.config, shared)),
            protocol.METRICS: protocol.metrics(
                **{
                    protocol.CLIENT_ID: job.cid,
                    protocol.NUM_EXAMPLES: len(job.data.y_train),
                    protocol.TRAIN_LOSS: loss,
                    protocol.RECEIVED_NORM: protocol.l2_norm(job.received),
                    protocol.KEPT_NORM: job.kept_norm(),
                    protocol.COMPUTE_SECONDS: time.perf_counter() - start,
                    protocol.ON_GPU: int(job.data.y_train.is_cuda),  # where the data is, the training ran
                }
            ),
        }
    )
    return Message(reply, reply_to=msg)


@app.evaluate()
def evaluate_weights(msg: Message, context: Context) -> Message:
    """Loss and accuracy on the client's test split and on its validation split.

    The test split is left unread when the server says so (``protocol.EVAL_TEST``: tuning trials).
    """
    start = time.perf_counter()
    job, routine = _job(msg, context)
    members = protocol.unpack_members(job.received)
    if members is None:
        weights = [routine.evaluation_weights(job)]
    else:  # an ensemble (hnet.input=noise; FedHyper's generated and shared models): each member completed
        weights = routine.ensemble(job, members)
    mixture = routine.member_mixture(job) if members is not None else None
    metrics = _split_metrics(job, weights, job.data.x_val, job.data.y_val, VAL_KEYS, mixture=mixture)
    if bool(job.config.get(protocol.EVAL_TEST, True)):
        test = _split_metrics(job, weights, job.data.x_test, job.data.y_test, TEST_KEYS, members is not None, mixture)
        metrics.update(test)
    reply = protocol.metrics(
        **{
            protocol.CLIENT_ID: job.cid,
            **metrics,
            protocol.RECEIVED_NORM: protocol.l2_norm(job.received),
            protocol.KEPT_NORM: job.kept_norm(),
            protocol.COMPUTE_SECONDS: time.perf_counter() - start,
        }
    )
    return Message(RecordDict({protocol.METRICS: reply}), reply_to=msg)


# (examples, loss, accuracy) metric names of each split
TEST_KEYS = (protocol.NUM_EXAMPLES, protocol.EVAL_LOSS, protocol.EVAL_ACCURACY)
VAL_KEYS = (protocol.NUM_VAL_EXAMPLES, protocol.VAL_LOSS, protocol.VAL_ACCURACY)


def _split_metrics(
    job: Job,
    weights: list[dict],
    x: torch.Tensor,
    y: torch.Tensor,
    keys: tuple[str, str, str],
    uncertainty: bool = False,
    mixture: list[float] | None = None,
) -> dict[str, float]:
    """One split's example count, loss and accuracy; an ensemble's predictive uncertainty if asked.

    ``mixture``: an ensemble's member weights in its averaged prediction (None: equal)."""
    count, loss_key, accuracy_key = keys
    if len(weights) == 1:
        loss, accuracy = evaluate(job.model, weights[0], x, y)
        return {count: len(y), loss_key: loss, accuracy_key: accuracy}
    result = evaluate_ensemble(job.model, weights, x, y, mixture)
    metrics = {count: len(y), loss_key: result["loss"], accuracy_key: result["accuracy"]}
    if uncertainty:
        metrics |= {
            protocol.MEMBER_ACCURACY: result["member_accuracy"],
            protocol.PREDICTIVE_ENTROPY: result["entropy"],
            protocol.MUTUAL_INFORMATION: result["mutual_information"],
            protocol.ENTROPY_CORRECT: result["entropy_correct"],
            protocol.ENTROPY_WRONG: result["entropy_wrong"],
        }
    return metrics
