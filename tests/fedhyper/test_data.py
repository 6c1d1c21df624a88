import numpy as np
import pytest
import torch

from fedhyper.data import (
    DataConfig,
    cache,
    get_spec,
    hub,
    idx,
    load_federated,
    partition,
    partition_indices,
    split_client,
)


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
    x, y = idx.load_idx_dir(idx_dir)
    assert x.shape == (200, 28, 28) and y.shape == (200,)
    assert y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]

    (idx_dir / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        idx.read_idx(idx_dir / "bad")


def test_missing_data_error_names_every_way_to_get_it(tmp_path, monkeypatch):
    import dataclasses

    import datasets

    spec = dataclasses.replace(get_spec("fmnist"), idx_dir=tmp_path / "absent")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("offline")))

    with pytest.raises(FileNotFoundError) as err:
        hub.load_pooled(spec)

    message = str(err.value)
    assert "dataset-fashion-mnist" in message and "Hugging Face hub (offline)" in message
    assert "save_to_disk" in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match="data.root=.*nowhere does not exist"):
        hub.load_pooled(spec, str(tmp_path / "nowhere"))


def test_federated_dataset_from_a_root_folder_gives_clients_their_classes(idx_dir):
    cfg = DataConfig(
        root=str(idx_dir), num_clients=5, partition="pathological", classes_per_client=2, cache_dir=str(idx_dir / "c")
    )

    fd = load_federated(cfg, seed=0)

    assert len(fd) == 5 and fd.input_shape == (1, 28, 28) and fd.num_classes == 10
    client = fd.client(0)
    assert len(client.classes) == 2
    assert client.x_train.dtype == torch.float32 and client.x_train.shape[1:] == (1, 28, 28)
    assert load_federated(cfg, seed=0) is fd  # cached per process
    with pytest.raises(ValueError, match="outside"):
        fd.client(5)


def per_client_load_partition(y: np.ndarray, num_clients: int, kind: str, seed: int) -> list[np.ndarray]:
    """The partition as flwr-datasets' public API gives it, one ``load_partition`` per client."""
    from datasets import Dataset

    partitioner = partition._partitioner(kind, num_clients, classes_per_client=2, alpha=0.3, seed=seed)
    partitioner.dataset = Dataset.from_dict({"label": y, "row": np.arange(len(y))})
    return [np.asarray(partitioner.load_partition(i)["row"]) for i in range(num_clients)]


@pytest.mark.parametrize(("kind", "num_clients"), [("pathological", 20), ("dirichlet", 30), ("iid", 7)])
def test_one_pass_partition_equals_flwr_datasets_load_partition_per_client(kind, num_clients):
    y = np.random.default_rng(5).integers(0, 10, 1003)

    fast = partition_indices(y, num_clients, kind, classes_per_client=2, alpha=0.3, seed=11)

    expected = per_client_load_partition(y, num_clients, kind, seed=11)
    assert len(fast) == num_clients
    assert all(np.array_equal(f, e) for f, e in zip(fast, expected, strict=True))


def test_partition_is_computed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    y = labels()
    first = cache.cached_partition(y, 10, "dirichlet", 2, 0.3, seed=3, directory=tmp_path)
    monkeypatch.setattr(cache, "partition_indices", lambda *a, **k: pytest.fail("recomputed a cached partition"))

    again = cache.cached_partition(y, 10, "dirichlet", 2, 0.3, seed=3, directory=tmp_path)

    assert len(list(tmp_path.glob("partition-*.npz"))) == 1 and not list(tmp_path.glob("*.tmp"))
    assert np.array_equal(again.rows, first.rows) and np.array_equal(again.offsets, first.offsets)
    direct = partition_indices(y, 10, "dirichlet", alpha=0.3, seed=3)
    assert all(np.array_equal(again[i], direct[i]) for i in range(10))


def test_cache_key_changes_with_labels_seed_and_parameters_but_not_unused_ones():
    y = labels()
    key = cache.partition_key(y, {"partition": "dirichlet", "alpha": 0.3, "seed": 0})

    assert key == cache.partition_key(y.copy(), {"partition": "dirichlet", "alpha": 0.3, "seed": 0})
    assert key != cache.partition_key(y[::-1], {"partition": "dirichlet", "alpha": 0.3, "seed": 0})
    assert key != cache.partition_key(y, {"partition": "dirichlet", "alpha": 0.3, "seed": 1})
    assert key != cache.partition_key(y, {"partition": "dirichlet", "alpha": 0.5, "seed": 0})


def test_a_corrupt_cache_file_is_recomputed_and_an_empty_cache_dir_turns_caching_off(tmp_path, monkeypatch):
    y = labels()
    cache.cached_partition(y, 4, "iid", 2, 0.3, seed=0, directory=tmp_path)
    (path,) = tmp_path.glob("partition-*.npz")
    path.write_bytes(b"not a zip file")

    parts = cache.cached_partition(y, 4, "iid", 2, 0.3, seed=0, directory=tmp_path)

    assert [len(parts[i]) for i in range(4)] == [250] * 4
    assert np.load(path)["offsets"].tolist() == [0, 250, 500, 750, 1000]  # rewritten
    monkeypatch.setenv(cache.ENV_DIR, str(tmp_path / "env"))
    assert cache.cache_dir(None) == tmp_path / "env" and cache.cache_dir("") is None
    assert cache.cache_dir(str(tmp_path / "opt")) == tmp_path / "opt"


def test_clients_get_the_same_rows_as_splitting_every_client_up_front(idx_dir):
    cfg = DataConfig(root=str(idx_dir), num_clients=6, partition="dirichlet", alpha=0.5, cache_dir=str(idx_dir / "c"))
    y = idx.load_idx_dir(idx_dir)[1]

    fd = load_federated(cfg, seed=2)

    rows = partition_indices(y, 6, "dirichlet", alpha=0.5, seed=2)
    for cid, r in enumerate(rows):
        expected = split_client(r, cfg.val_fraction, cfg.test_fraction, 2 * 100_003 + cid)
        got = fd.split(cid)
        assert all(np.array_equal(getattr(got, k), getattr(expected, k)) for k in ("train", "val", "test"))
        assert torch.equal(fd.client(cid).y_test, torch.from_numpy(y[expected.test]).long())
