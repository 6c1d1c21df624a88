"""A real client's own data directory: the accepted layouts and the errors for everything else."""

import numpy as np
import pytest
import torch

from fedhyper.data import get_spec
from fedhyper.data.local import load_local

FMNIST = get_spec("fmnist")
MEAN, STD = FMNIST.mean[0], FMNIST.std[0]


def write_npz(path, n=6, shape=(28, 28), dtype=np.uint8, labels=None):
    x = np.random.default_rng(0).integers(0, 256, size=(n, *shape)).astype(dtype)
    np.savez(path, x=x, y=np.arange(n) % 10 if labels is None else labels)
    return x


def test_npz_files_load_standardised_like_the_server_dataset(tmp_path):
    x = write_npz(tmp_path / "train.npz", n=6)
    write_npz(tmp_path / "test.npz", n=4, shape=(1, 28, 28))

    data = load_local(tmp_path, "fmnist")

    assert data.x_train.shape == (6, 1, 28, 28) and data.x_test.shape == (4, 1, 28, 28)
    assert data.y_train.tolist() == [0, 1, 2, 3, 4, 5] and data.y_train.dtype == torch.int64
    expected = (torch.from_numpy(x).float() / 255 - MEAN) / STD
    torch.testing.assert_close(data.x_train[:, 0], expected)
    assert len(data.y_val) == 0  # val is optional


def test_an_image_folder_per_class_loads_with_the_folder_names_as_labels(tmp_path):
    from PIL import Image

    for split, n in (("train", 3), ("test", 2)):
        for label in (3, 7):
            (tmp_path / split / str(label)).mkdir(parents=True)
            for i in range(n):
                Image.new("L", (28, 28), color=label * 10 + i).save(tmp_path / split / str(label) / f"{i}.png")

    data = load_local(tmp_path, "fmnist")

    assert data.x_train.shape == (6, 1, 28, 28) and sorted(data.y_train.tolist()) == [3, 3, 3, 7, 7, 7]
    first = data.x_train[data.y_train == 7][0, 0, 0, 0]
    assert first == pytest.approx((70 / 255 - MEAN) / STD)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: write_npz(d / "train.npz", shape=(32, 32)), "train.npz: x has shape [6, 32, 32]"),
        (lambda d: write_npz(d / "train.npz", labels=np.array([0, 1, 2, 3, 4, 12])), "labels span 0..12"),
        (lambda d: write_npz(d / "train.npz", labels=np.zeros(5, int)), "one label per image"),
        (lambda d: write_npz(d / "train.npz", dtype=np.float32), "float pixels must be finite and within 0..1"),
        (lambda d: np.savez(d / "train.npz", images=np.zeros((2, 28, 28))), "lacks array x and y"),
        (lambda d: (d / "train.npz").write_bytes(b"not a zip"), "is not a readable .npz file"),
        (lambda d: (d / "train" / "shirts").mkdir(parents=True), "rename it to its label"),
        (lambda d: None, "holds neither train.npz nor a train/ folder"),
    ],
)
def test_malformed_data_is_refused_with_the_file_and_the_fix(tmp_path, make, message):
    make(tmp_path)
    if not (tmp_path / "test.npz").exists():
        write_npz(tmp_path / "test.npz")

    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_local(tmp_path, "fmnist")


def test_a_missing_directory_names_the_node_config_key(tmp_path):
    with pytest.raises(ValueError, match="data-dir=.* is not a directory"):
        load_local(tmp_path / "nope", "fmnist")


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_colour_arrays_load_standardised_channel_by_channel(tmp_path, layout):
    cifar = get_spec("cifar10")
    x = np.random.default_rng(1).integers(0, 256, size=(5, 3, 32, 32)).astype(np.uint8)
    stored = x if layout == "channels_first" else x.transpose(0, 2, 3, 1)  # [N, 32, 32, 3]
    np.savez(tmp_path / "train.npz", x=stored, y=np.arange(5))
    np.savez(tmp_path / "test.npz", x=stored[:2], y=np.arange(2))

    data = load_local(tmp_path, "cifar10")

    assert data.x_train.shape == (5, 3, 32, 32) and data.x_test.shape == (2, 3, 32, 32)
    for c in range(3):
        expected = (torch.from_numpy(x[:, c]).float() / 255 - cifar.mean[c]) / cifar.std[c]
        torch.testing.assert_close(data.x_train[:, c], expected)


def test_rgb_image_folders_load_for_a_colour_dataset_and_gray_arrays_are_refused(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        (tmp_path / split / "42").mkdir(parents=True)
        Image.new("RGB", (32, 32), color=(255, 0, 51)).save(tmp_path / split / "42" / "a.png")

    data = load_local(tmp_path, "cifar100")

    cifar100 = get_spec("cifar100")
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 51), cifar100.mean, cifar100.std, strict=True)]
    assert data.y_train.tolist() == [42]
    assert data.x_train[0, :, 0, 0].tolist() == pytest.approx(expected, rel=1e-5)
    (tmp_path / "gray").mkdir()
    write_npz(tmp_path / "gray" / "train.npz", shape=(32, 32))
    write_npz(tmp_path / "gray" / "test.npz", shape=(32, 32))
    with pytest.raises(ValueError, match=r"x has shape \[6, 32, 32\]; the dataset wants \[N, 3, 32, 32\]"):
        load_local(tmp_path / "gray", "cifar10")
