import torch
from flwr.app import ConfigRecord

from fedhyper import protocol
from fedhyper.data import DataConfig
from fedhyper.training import LocalTrainConfig


def test_configs_cross_the_wire_with_their_types():
    sent = DataConfig(num_clients=7, partition="dirichlet", alpha=1, root=None)

    record = ConfigRecord(protocol.encode(protocol.DATA_PREFIX, sent))
    received = protocol.decode(DataConfig, protocol.DATA_PREFIX, record)

    assert received == sent
    assert isinstance(received.alpha, float)
    assert "data.root" not in record  # None is left out, the default applies


def test_weights_round_trip_in_order():
    weights = {"conv.weight": torch.randn(2, 1, 3, 3), "conv.bias": torch.randn(2)}

    back = protocol.record_to_weights(protocol.weights_to_record(weights))

    assert list(back) == list(weights)
    for n in weights:
        torch.testing.assert_close(back[n], weights[n])
    assert abs(protocol.l2_norm(weights) - float(torch.cat([w.flatten() for w in weights.values()]).norm())) < 1e-4


def test_local_config_defaults_are_pfedhns():
    cfg = protocol.decode(LocalTrainConfig, protocol.LOCAL_PREFIX, ConfigRecord({}))
    assert (cfg.steps, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == (50, 5e-3, 0.9, 5e-5, 64)
