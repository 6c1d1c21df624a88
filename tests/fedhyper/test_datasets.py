"""CIFAR-10, CIFAR-100 and FEMNIST through the real loader, on small copies in the hub's schemas."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from fedhyper.data import SPECS, DataConfig, DatasetSpec, dataset_info, get_spec, hub, load_federated, specs
from fedhyper.models import ModelConfig, build_model, target_shapes
from simulations.config import DATA_SETTINGS
from simulations.run import check, precheck
from tests.hub_copies import build_copy

HUB_SETS = ("cifar10", "cifar100", "femnist")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Nothing is downloaded when data.root is given: any call to the hub fails the test."""
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the hub was asked for data"))


def config(name: str, root, **kw) -> DataConfig:
    return DataConfig(name=name, root=str(root), cache_dir="", **kw)


@pytest.mark.parametrize("name", HUB_SETS)
def test_a_hub_copy_loads_standardised_with_its_own_per_channel_statistics(name, hub_copies):
    from datasets import load_from_disk

    spec = get_spec(name)
    fd = load_federated(config(name, hub_copies[name], num_clients=4, partition="iid"), seed=0)

    first = np.asarray(load_from_disk(str(hub_copies[name]))["train"][0][spec.image_column], np.float32) / 255
    first = first.reshape(spec.input_shape[1], spec.input_shape[2], -1).transpose(2, 0, 1)  # [C, H, W]
    expected = (first - np.array(spec.mean)[:, None, None]) / np.array(spec.std)[:, None, None]
    assert fd.input_shape == spec.input_shape and fd.num_classes == spec.num_classes
    assert (fd.input_shape, fd.num_classes) == dataset_info(name)
    torch.testing.assert_close(fd.images[0], torch.from_numpy(expected).float())
    assert fd.labels.max().item() == spec.num_classes - 1


def test_the_hubs_parquet_files_load_as_the_save_to_disk_copy(hub_copies, tmp_path):
    from datasets import load_from_disk

    for split, ds in load_from_disk(str(hub_copies["cifar10"])).items():  # the hub's layout
        ds.to_parquet(str(tmp_path / "plain_text" / f"{split}-00000-of-00001.parquet"))
    spec = get_spec("cifar10")

    parquet, saved = hub.load_pooled(spec, str(tmp_path)), hub.load_pooled(spec, str(hub_copies["cifar10"]))

    assert np.array_equal(parquet.images, saved.images) and np.array_equal(parquet.labels, saved.labels)
    assert parquet.images.shape == (300, 3, 32, 32)  # train and test pooled


def test_decoded_images_are_kept_so_that_a_second_process_reads_them_and_other_bytes_miss(
    hub_copies, tmp_path, monkeypatch
):
    from datasets import load_from_disk

    spec, cache = get_spec("cifar10"), tmp_path / "cache"
    first = hub.load_pooled(spec, str(hub_copies["cifar10"]), cache)
    assert len(list(cache.glob("images-cifar10-*.npy"))) == 1
    assert np.array_equal(first.images, hub.load_pooled(spec, str(hub_copies["cifar10"])).images)  # as uncached
    decoded = hub.decode_images
    monkeypatch.setattr(hub, "decode_images", lambda *a: pytest.fail("decoded again"))

    again = hub.load_pooled(spec, str(hub_copies["cifar10"]), cache)  # as another client process would

    assert np.array_equal(again.images, first.images) and np.array_equal(again.labels, first.labels)
    # Other images (one pixel changed) hash to another key: decoded, not read from the first copy's file.
    copy = load_from_disk(str(hub_copies["cifar10"]))
    changed = copy["train"].map(lambda row, i: {"img": row["img"].point(lambda v: 255 - v) if i == 0 else row["img"]},
                                with_indices=True)  # fmt: skip
    copy["train"] = changed
    copy.save_to_disk(str(tmp_path / "changed"))
    monkeypatch.setattr(hub, "decode_images", decoded)
    other = hub.load_pooled(spec, str(tmp_path / "changed"), cache)
    assert len(list(cache.glob("images-cifar10-*.npy"))) == 2
    assert not np.array_equal(other.images[0], first.images[0]) and np.array_equal(other.images[1:], first.images[1:])


def test_natural_partition_gives_each_client_one_writer_from_a_seeded_sample(hub_copies):
    writers = hub.load_pooled(get_spec("femnist"), str(hub_copies["femnist"])).groups

    fd = load_federated(config("femnist", hub_copies["femnist"], num_clients=5, partition="natural"), seed=0)
    again = load_federated(config("femnist", hub_copies["femnist"], num_clients=5, partition="natural"), seed=1)

    owned = [np.unique(writers[fd.parts[c]]) for c in range(5)]
    assert all(len(w) == 1 for w in owned) and len({int(w[0]) for w in owned}) == 5
    assert all(len(fd.parts[c]) == int((writers == owned[c][0]).sum()) for c in range(5))  # all of its rows
    assert {int(w[0]) for w in owned} != {int(np.unique(writers[again.parts[c]])[0]) for c in range(5)}
    split = fd.split(0)
    assert len(split.train) and len(split.test) and not set(split.train) & set(split.test)
    with pytest.raises(ValueError, match="data.num_clients=13 exceeds the 12 owners"):
        load_federated(config("femnist", hub_copies["femnist"], num_clients=13, partition="natural"), seed=0)


@pytest.mark.parametrize(("partition", "kw"), [("pathological", {"classes_per_client": 10}), ("dirichlet", {})])
def test_label_partitions_work_on_a_hundred_classes(hub_copies, partition, kw):
    fd = load_federated(config("cifar100", hub_copies["cifar100"], num_clients=5, partition=partition, **kw), seed=0)

    sizes = [len(fd.parts[c]) for c in range(5)]
    assert sum(sizes) <= 500 and min(sizes) > 0
    if partition == "pathological":
        assert [len(np.unique(fd.labels.numpy()[fd.parts[c]])) for c in range(5)] == [10] * 5


@pytest.mark.parametrize(
    ("name", "conv1", "fc1", "fc3"),
    [("cifar10", (16, 3, 5, 5), (120, 800), (10, 84)), ("cifar100", (16, 3, 5, 5), (120, 800), (100, 84)),
     ("femnist", (16, 1, 5, 5), (120, 512), (62, 84))],
)  # fmt: skip
def test_pfedhns_cnn_takes_each_datasets_shape_and_classes(name, conv1, fc1, fc3):
    model = build_model(ModelConfig(), *dataset_info(name))

    shapes = target_shapes(model)
    assert (shapes["conv1.weight"], shapes["fc1.weight"], shapes["fc3.weight"]) == (conv1, fc1, fc3)
    assert model(torch.zeros(2, *get_spec(name).input_shape)).shape == (2, get_spec(name).num_classes)


def test_the_registry_refuses_a_second_spec_of_a_name_and_statistics_of_the_wrong_length():
    fmnist = get_spec("fmnist")
    with pytest.raises(ValueError, match="registered twice"):
        specs.register(fmnist)
    with pytest.raises(ValueError, match="one mean and one std per channel"):
        DatasetSpec(**{**dataclasses.asdict(fmnist), "name": "x", "input_shape": (3, 28, 28)})


def test_the_named_settings_compose_the_published_protocols():
    cifar10 = precheck(DATA_SETTINGS["cifar10_pfedhn"]).data
    cifar100 = precheck(DATA_SETTINGS["cifar100_pfedhn"]).data
    femnist = precheck(DATA_SETTINGS["femnist_natural"]).data

    assert (cifar10.name, cifar10.num_clients, cifar10.classes_per_client) == ("cifar10", 50, 2)
    assert (cifar100.name, cifar100.num_clients, cifar100.classes_per_client) == ("cifar100", 50, 10)
    assert (femnist.name, femnist.partition) == ("femnist", "natural")
    assert set(SPECS) == {"fmnist", *HUB_SETS}


def bad_copy(tmp_path, name: str, **kw):
    return build_copy(get_spec(name), tmp_path / "copy", per_class=1, owners=3, **kw)


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        (lambda d: None, ["data=imagenet"], "data='imagenet' is unknown; choose one of cifar10, cifar100"),
        (lambda d: None, ["data=cifar10", "data.root={d}/absent"], "data.root={d}/absent is not a directory"),
        (lambda d: (d / "empty").mkdir(), ["data=cifar10", "data.root={d}/empty"], "holds no dataset"),
        (lambda d: bad_copy(d, "cifar100", drop="fine_label"), ["data=cifar100", "data.root={d}/copy"],
         "split 'train' lacks column 'fine_label'"),
        (lambda d: bad_copy(d, "cifar10", shape=(3, 28, 28)), ["data=cifar10", "data.root={d}/copy"],
         "image 0 is 28x28 with 3 channel(s); CIFAR-10 has 32x32 images with 3"),
        (lambda d: bad_copy(d, "cifar10", shape=(1, 32, 32)), ["data=cifar10", "data.root={d}/copy"],
         "image 0 is 32x32 with 1 channel(s)"),
        (lambda d: bad_copy(d, "femnist"), ["data=femnist", "data.root={d}/copy", "data.partition=natural",
                                            "data.num_clients=4"], "data.num_clients=4 exceeds the 3 writers"),
        (lambda d: None, ["data=cifar10", "data.partition=natural"], "use it with data=femnist"),
    ],
    ids=["unknown", "missing", "empty", "column", "size", "channels", "writers", "natural"],
)  # fmt: skip
def test_bad_data_is_refused_in_one_line_naming_the_option_before_any_engine(tmp_path, make, argv, message):
    make(tmp_path)

    with pytest.raises((ValueError, FileNotFoundError)) as err:
        check([a.format(d=tmp_path) for a in argv])

    assert message.format(d=tmp_path) in str(err.value) and "\n" not in str(err.value)
    if "data.root" in " ".join(argv) and "writers" not in message:
        assert "data.root" in str(err.value) and "save_to_disk" in str(err.value)  # and how to get the data


def test_the_datasets_page_lists_every_spec_as_the_registry_holds_it():
    page = (Path(__file__).resolve().parents[2] / "docs" / "datasets.md").read_text()

    for spec in SPECS.values():
        row = next(line for line in page.splitlines() if line.startswith(f"| `{spec.name}` |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"`{spec.hub_id}`"
        assert cells[2] == f"`{spec.image_column}`, `{spec.label_column}`"
        assert cells[3] == (f"`{spec.natural_key}`" if spec.natural_key else "—")
        assert cells[4] == ", ".join(map(str, spec.input_shape)) and cells[5] == str(spec.num_classes)
        mean, std = (", ".join(f"{v:.4f}" for v in values) for values in (spec.mean, spec.std))
        assert cells[6].startswith(f"{mean} / {std}"), (cells[6], mean, std)
