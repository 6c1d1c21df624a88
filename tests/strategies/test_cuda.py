"""Every strategy's clients and server run on each device this machine has: the CPU, and CUDA where present.

A tensor left on the CPU beside the GPU's fails every client's training with "Expected all tensors
to be on the same device", which no CPU machine can show: a session with a GPU runs these tests
(``pytest tests/strategies/test_cuda.py``), skipped for CUDA elsewhere. One such tensor, the local
loss's running sum, failed every training reply in the first GPU runs (docs/architecture.md).
"""

import pytest
import torch

from strategies.exchange import RoundMetrics
from strategies.registry import REGISTRY

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_strategy_trains_and_evaluates_with_no_reply_left_out(loop_on, tiny_config, name, device):
    loop = loop_on(tiny_config(name, f"device={device}"))
    metrics = RoundMetrics()

    loop.train(1, metrics)
    assert loop.replies.rejected == {} and metrics.values["train_clients"] == 2
    # In process the clients train on the GPU whenever there is one, whatever the server's device.
    assert metrics.values["train_gpu_clients"] == (2 if torch.cuda.is_available() else 0)
    result = loop.evaluate(1, [0, 1, 2, 3], metrics)
    assert loop.replies.rejected == {} and 0 < result["accuracy"] <= 1
