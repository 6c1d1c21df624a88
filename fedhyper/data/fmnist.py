"""Fashion-MNIST from local IDX files, with the Hugging Face hub as the fallback.

Lookup order: the directory named in the config, then the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), then the hub through
the ``datasets`` package. The official train and test files are pooled (70,000 images):
personalised FL splits each client's own share into train / val / test afterwards.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HUB_NAME = "zalando-datasets/fashion_mnist"
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Channel statistics of the 60,000 training images, used to standardise inputs.
MEAN, STD = 0.2860, 0.3530


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into an array of its own shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:  # a corrupt or truncated gzip stream
        raise ValueError(f"{path} cannot be read: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise ValueError(f"{path} holds {len(raw) - offset} bytes of data, its header says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def load_idx_dir(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pool the train and test IDX files of ``directory``: images [N, 28, 28] uint8, labels [N]."""
    images, labels = [], []
    for split, (img_stem, lbl_stem) in _FILES.items():
        img, lbl = _find(directory, img_stem), _find(directory, lbl_stem)
        if img is None or lbl is None:
            raise FileNotFoundError(f"{directory} lacks the {split} files {img_stem}[.gz] / {lbl_stem}[.gz]")
        x, y = read_idx(img), read_idx(lbl)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{directory}: {split} images {x.shape} do not match labels {y.shape}")
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def _load_hub() -> tuple[np.ndarray, np.ndarray]:
    from datasets import concatenate_datasets, load_dataset

    ds = load_dataset(HUB_NAME)
    pooled = concatenate_datasets([ds["train"], ds["test"]]).with_format("numpy")
    return np.stack(pooled["image"]).astype(np.uint8), pooled["label"].astype(np.int64)


def load_fmnist(root: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return pooled Fashion-MNIST as (images [70000, 28, 28] uint8, labels [70000] int64).

    Raises
    ------
    FileNotFoundError
        When ``root`` is given but missing, or when neither the Debian package nor the hub
        could provide the data; the message names both ways to get it.
    """
    if root:
        directory = Path(root).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"data.root={root} does not exist; point it at a folder with the IDX files")
        return load_idx_dir(directory)
    if DEBIAN_DIR.is_dir():
        return load_idx_dir(DEBIAN_DIR)
    try:
        log.info("%s not found; fetching %s from the Hugging Face hub", DEBIAN_DIR, HUB_NAME)
        return _load_hub()
    except Exception as err:  # the hub fails in many ways (offline, missing package, auth)
        raise FileNotFoundError(
            "Fashion-MNIST not found. Either install the Debian package "
            "(apt-get install dataset-fashion-mnist, which fills /usr/share/datasets/fashion-mnist), "
            "set data.root to a folder with the four IDX files, or allow the download of "
            f"{HUB_NAME} from the Hugging Face hub (it failed: {err})"
        ) from err
