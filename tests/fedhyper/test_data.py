import numpy as np
import pytest
import torch

from fedhyper.data import DataConfig, fmnist, load_federated, partition_indices, split_client


def labels(n_per_class: int = 100, n_classes: int = 10) -> np.ndarray:
    return np.repeat(np.arange(n_classes), n_per_class)


def test_pathological_gives_each_client_exactly_the_promised_number_of_classes():
    y = labels()

    parts = partition_indices(y, num_clients=20, partition="pathological", classes_per_client=2, seed=1)

    assert [len(np.unique(y[p])) for p in parts] == [2] * 20
    all_rows = np.concatenate(parts)
    assert len(all_rows) == len(np.unique(all_rows))  # no row given twice
    assert set(np.unique(y[all_rows])) == set(range(10))  # every class used


def test_partitions_are_the_same_for_a_seed_and_differ_between_seeds():
    y = labels()

    a = partition_indices(y, 10, "dirichlet", alpha=0.3, seed=3)
    b = partition_indices(y, 10, "dirichlet", alpha=0.3, seed=3)
    c = partition_indices(y, 10, "dirichlet", alpha=0.3, seed=4)

    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))


def test_iid_partitions_are_balanced_and_unknown_partition_is_named():
    parts = partition_indices(labels(), 8, "iid")
    assert {len(p) for p in parts} == {125}
    with pytest.raises(ValueError, match="pathological, dirichlet, iid"):
        partition_indices(labels(), 8, "sharded")


def test_client_split_cuts_train_val_test_without_overlap():
    rows = np.arange(100)

    s = split_client(rows, val_fraction=0.1, test_fraction=0.2, seed=0)

    assert (len(s.train), len(s.val), len(s.test)) == (70, 10, 20)
    assert len(set(s.train) | set(s.val) | set(s.test)) == 100


def test_idx_reader_round_trips_and_rejects_a_bad_magic(idx_dir):
    x, y = fmnist.load_idx_dir(idx_dir)
    assert x.shape == (200, 28, 28) and y.shape == (200,)
    assert y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]

    (idx_dir / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        fmnist.read_idx(idx_dir / "bad")


def test_missing_data_error_names_both_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setattr(fmnist, "_load_hub", lambda: (_ for _ in ()).throw(ConnectionError("offline")))

    with pytest.raises(FileNotFoundError) as err:
        fmnist.load_fmnist()

    assert "dataset-fashion-mnist" in str(err.value) and "Hugging Face" in str(err.value)
    with pytest.raises(FileNotFoundError, match="data.root"):
        fmnist.load_fmnist(str(tmp_path / "nowhere"))


def test_federated_dataset_from_a_root_folder_gives_clients_their_classes(idx_dir):
    cfg = DataConfig(root=str(idx_dir), num_clients=5, partition="pathological", classes_per_client=2)

    fd = load_federated(cfg, seed=0)

    assert len(fd) == 5 and fd.input_shape == (1, 28, 28) and fd.num_classes == 10
    client = fd.client(0)
    assert len(client.classes) == 2
    assert client.x_train.dtype == torch.float32 and client.x_train.shape[1:] == (1, 28, 28)
    assert load_federated(cfg, seed=0) is fd  # cached per process
    with pytest.raises(ValueError, match="outside"):
        fd.client(5)
