"""Datasets, their federated partitions and each client's cached share of them."""

from fedhyper.data.federated import ClientData, DataConfig, FederatedDataset, dataset_info, load_federated
from fedhyper.data.partition import ClientRows, ClientSplit, partition_indices, split_client
from fedhyper.data.specs import SPECS, DatasetSpec, get_spec

__all__ = [
    "ClientData",
    "ClientRows",
    "ClientSplit",
    "DataConfig",
    "DatasetSpec",
    "FederatedDataset",
    "SPECS",
    "dataset_info",
    "get_spec",
    "load_federated",
    "partition_indices",
    "split_client",
]
