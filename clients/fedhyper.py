"""FedHyper's client: train as pFedHN-PC's clients do, adapt before evaluating.

Training is the plain routine: the generated body (or the whole generated model) over the head
this client keeps, trained jointly; the head stays in the node's state and never enters a reply.
Before an evaluation the client adapts its model with ``strategy.adapt_steps`` SGD steps on its
own training split, as FedAvg-FT's clients do (Yu, Bagdasaryan, Shmatikov, 2020,
https://arxiv.org/abs/2002.04758); the adapted copy is thrown away. 0 steps evaluate the model
as it is.
"""

from __future__ import annotations

from clients.fedavg_ft import evaluation_weights as adapted_weights
from clients.personal import Routine, plain_train
from fedhyper.algorithms import register_client

register_client("fedhyper", Routine(plain_train, adapted_weights))
