"""Datasets, their federated partitions and each client's cached share of them."""

from fedhyper.data.federated import ClientData, DataConfig, FederatedDataset, dataset_info, load_federated
from fedhyper.data.partition import ClientRows, ClientSplit, partition_indices, split_client

__all__ = [
    "ClientData",
    "ClientRows",
    "ClientSplit",
    "DataConfig",
    "FederatedDataset",
    "dataset_info",
    "load_federated",
    "partition_indices",
    "split_client",
]
