"""PeFLL's client side: describe this client's data with the server's ψ, and backpropagate into ψ.

Scott, Zakerinia, Lampert. "PeFLL: Personalized Federated Learning by Learning to Learn".
ICLR 2024. https://arxiv.org/abs/2306.05515

Two query handlers (registered below; ``clients/app.py`` serves every registered query):
``query.descriptor`` returns the client's descriptor v_i = mean ψ(x, y) over its training examples;
``query.descriptor_grad`` receives the same ψ and dL/dv_i and returns ψ's gradient from this
client's examples. Neither trains the target
model, and the client keeps nothing: ψ and the descriptor are recomputed from what arrives.
"""

from __future__ import annotations

import time
import zlib

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

from clients import runtime
from fedhyper import protocol
from fedhyper.algorithms import register_client
from fedhyper.data import ClientData
from fedhyper.descriptor import DescriptorNet, describe, descriptor_vjp


def _inputs(msg: Message, context: Context) -> tuple[int, ClientData, DescriptorNet, int]:
    """This client's id, its data, the ψ it was sent (on its device) and its description's seed."""
    cid = runtime.client_id(context)
    config: ConfigRecord = msg.content[protocol.CONFIG]
    data, _, _ = runtime.client_data(config, cid, context.node_config)
    psi = DescriptorNet.from_weights(runtime.received_weights(msg))
    # The seed picks the examples a description reads (at most descriptor.MAX_EXAMPLES): the same
    # for the forward and the backward of a round, and for every round of the run.
    seed = zlib.crc32(f"{config[protocol.SEED]}/{cid}".encode())
    return cid, data, psi, seed


def _reply(msg: Message, cid: int, arrays: dict[str, ArrayRecord], num_examples: int, start: float) -> Message:
    info = protocol.metrics(
        **{
            protocol.CLIENT_ID: cid,
            protocol.NUM_EXAMPLES: num_examples,
            protocol.COMPUTE_SECONDS: time.perf_counter() - start,
        }
    )
    return Message(RecordDict({**arrays, protocol.METRICS: info}), reply_to=msg)


def descriptor(msg: Message, context: Context) -> Message:
    """``query.descriptor``: v_i [d] from ψ (ARRAYS) and this client's training examples."""
    start = time.perf_counter()
    cid, data, psi, seed = _inputs(msg, context)
    with torch.no_grad():
        v = describe(psi, data.x_train, data.y_train, seed=seed)
    record = protocol.weights_to_record({protocol.DESCRIPTOR: v})
    return _reply(msg, cid, {protocol.DESCRIPTOR: record}, len(data.y_train), start)


def descriptor_grad(msg: Message, context: Context) -> Message:
    """``query.descriptor_grad``: ψ's gradient (ARRAYS) from ψ and dL/dv_i (DESCRIPTOR_GRAD)."""
    start = time.perf_counter()
    cid, data, psi, seed = _inputs(msg, context)
    grad_v = protocol.record_to_weights(msg.content.array_records[protocol.DESCRIPTOR_GRAD])[protocol.DESCRIPTOR_GRAD]
    grads = descriptor_vjp(psi, data.x_train, data.y_train, grad_v.to(runtime.device()), seed=seed)
    return _reply(msg, cid, {protocol.ARRAYS: protocol.weights_to_record(grads)}, len(data.y_train), start)


# PeFLL's clients train as plain clients do; they answer the two queries besides.
register_client(
    "pefll", queries={protocol.DESCRIPTOR_ACTION: descriptor, protocol.DESCRIPTOR_GRAD_ACTION: descriptor_grad}
)
