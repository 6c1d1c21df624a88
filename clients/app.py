"""The ClientApp: train the weights it is sent on local data, evaluate them, describe itself.

Every strategy whose clients just train what they receive (pFedHN, FedAvg) uses these
handlers; the server decides what the weights are. Each reply names the client by its
stable id so the server never relies on transport node ids.
"""

from __future__ import annotations

import time

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from clients import faults, runtime
from fedhyper import protocol
from fedhyper.training import LocalTrainConfig, evaluate, train_local

app = ClientApp()


@app.query()
def describe(msg: Message, context: Context) -> Message:
    """Tell the server which client this node is and how much it trains on."""
    cid = runtime.client_id(context)
    data, _, _ = runtime.client_data(msg.content[protocol.CONFIG], cid)
    reply = protocol.metrics(**{protocol.CLIENT_ID: cid, protocol.NUM_TRAIN_EXAMPLES: len(data.y_train)})
    return Message(RecordDict({protocol.METRICS: reply}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    start = time.perf_counter()
    cid = runtime.client_id(context)
    config: ConfigRecord = msg.content[protocol.CONFIG]
    faults.before_training(config)
    data, input_shape, n_classes = runtime.client_data(config, cid)
    model = runtime.target_model(config, input_shape, n_classes)
    weights = runtime.received_weights(msg)
    local_cfg = protocol.decode(LocalTrainConfig, protocol.LOCAL_PREFIX, config)
    trained, loss = train_local(model, weights, data.x_train, data.y_train, local_cfg, runtime.generator(config, cid))
    reply = RecordDict(
        {
            protocol.ARRAYS: protocol.weights_to_record(faults.corrupt(config, trained)),
            protocol.METRICS: protocol.metrics(
                **{
                    protocol.CLIENT_ID: cid,
                    protocol.NUM_EXAMPLES: len(data.y_train),
                    protocol.TRAIN_LOSS: loss,
                    protocol.RECEIVED_NORM: protocol.l2_norm(weights),
                    protocol.COMPUTE_SECONDS: time.perf_counter() - start,
                }
            ),
        }
    )
    return Message(reply, reply_to=msg)


@app.evaluate()
def evaluate_weights(msg: Message, context: Context) -> Message:
    start = time.perf_counter()
    cid = runtime.client_id(context)
    config: ConfigRecord = msg.content[protocol.CONFIG]
    data, input_shape, n_classes = runtime.client_data(config, cid)
    model = runtime.target_model(config, input_shape, n_classes)
    weights = runtime.received_weights(msg)
    loss, accuracy = evaluate(model, weights, data.x_test, data.y_test)
    reply = protocol.metrics(
        **{
            protocol.CLIENT_ID: cid,
            protocol.NUM_EXAMPLES: len(data.y_test),
            protocol.EVAL_LOSS: loss,
            protocol.EVAL_ACCURACY: accuracy,
            protocol.RECEIVED_NORM: protocol.l2_norm(weights),
            protocol.COMPUTE_SECONDS: time.perf_counter() - start,
        }
    )
    return Message(RecordDict({protocol.METRICS: reply}), reply_to=msg)
