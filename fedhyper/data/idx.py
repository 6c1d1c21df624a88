"""IDX files (the format of MNIST and Fashion-MNIST), read without any dependency.

A folder holds the official train and test files; they are pooled, because personalised FL
splits each client's own share into train / val / test afterwards. Fashion-MNIST's Debian
package (``dataset-fashion-mnist``) installs such a folder, which is its offline default.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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


def holds_idx(directory: Path) -> bool:
    """Whether ``directory`` holds any of the IDX files ``load_idx_dir`` reads."""
    return any(_find(directory, stem) for stems in _FILES.values() for stem in stems)


def load_idx_dir(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pool the train and test IDX files of ``directory``: images [N, H, W] uint8, labels [N] int64."""
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
