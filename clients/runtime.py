"""Per-process client state: data, target model skeletons and the device, built once.

A simulated client process (a Ray actor) serves many clients in turn, and a real
SuperNode serves one client for its whole life; either way the dataset is read and
partitioned once per process and the target model is built once per configuration.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch
from flwr.app import ConfigRecord, Context, Message
from torch import nn

from fedhyper import protocol
from fedhyper.data import ClientData, DataConfig, dataset_info, load_federated
from fedhyper.data.local import load_local
from fedhyper.device import select_device
from fedhyper.models import ModelConfig, build_model, client_width


def client_id(context: Context) -> int:
    """The client's stable id: its partition id from the node config."""
    if protocol.NODE_PARTITION_ID not in context.node_config:
        raise ValueError(f"node config lacks {protocol.NODE_PARTITION_ID!r}; start the SuperNode with it")
    return int(context.node_config[protocol.NODE_PARTITION_ID])


@functools.lru_cache(maxsize=1)
def device() -> torch.device:
    # One thread per client process unless told otherwise: Ray runs several side by side.
    torch.set_num_threads(int(os.environ.get("FEDHYPER_CLIENT_THREADS", "1")))
    return select_device("auto")


def client_data(
    config: ConfigRecord, cid: int, node_config: Mapping[str, Any] | None = None
) -> tuple[ClientData, tuple[int, int, int], int]:
    """The client's data on its device, with the dataset's input shape and class count.

    A node whose config names a ``data-dir`` reads its own data from there
    (``fedhyper.data.local``); any other reads its partition of the configured dataset.
    """
    data_cfg = protocol.decode(DataConfig, protocol.DATA_PREFIX, config)
    if node_config and protocol.NODE_DATA_DIR in node_config:
        input_shape, n_classes = dataset_info(data_cfg.name)
        data = load_local(str(node_config[protocol.NODE_DATA_DIR]), data_cfg.name)
        return _on_device(data, device()), input_shape, n_classes
    seed = int(config[protocol.SEED])
    dataset = load_federated(data_cfg, seed)
    return _on_device(dataset.client(cid), device()), dataset.input_shape, dataset.num_classes


def _on_device(data: ClientData, dev: torch.device) -> ClientData:
    if dev.type == "cpu":
        return data
    return ClientData(**{k: v.to(dev) for k, v in asdict(data).items()})


def target_model(
    config: ConfigRecord, input_shape: tuple[int, int, int], n_classes: int, cid: int | None = None
) -> nn.Module:
    """The target network's skeleton at client ``cid``'s width (None: full width); its own
    parameters are never trained."""
    model_cfg = protocol.decode(ModelConfig, protocol.MODEL_PREFIX, config)
    width = 1.0 if cid is None else client_width(model_cfg, cid)
    return _model_cached(config_key(model_cfg), input_shape, n_classes, width)


def config_key(cfg: Any) -> tuple:
    """A dataclass config as a hashable cache key (lists become tuples); ``type(cfg)(**dict(key))`` rebuilds it."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in asdict(cfg).items()))


@functools.lru_cache(maxsize=8)
def _model_cached(key: tuple, input_shape: tuple[int, int, int], n_classes: int, width: float) -> nn.Module:
    return build_model(ModelConfig(**dict(key)), input_shape, n_classes, width).to(device())


def received_weights(msg: Message) -> dict[str, torch.Tensor]:
    """The weights a message carries, on this client's device."""
    return {k: v.to(device()) for k, v in protocol.record_to_weights(msg.content[protocol.ARRAYS]).items()}


def generator(config: ConfigRecord, cid: int) -> torch.Generator:
    """A batch-order generator that depends on the seed, the round and the client only."""
    key = f"{config[protocol.SEED]}/{config.get(protocol.SERVER_ROUND, 0)}/{cid}".encode()
    return torch.Generator().manual_seed(zlib.crc32(key))
