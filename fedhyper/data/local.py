"""A real client's own data, read from a directory on its node instead of a simulated partition.

A SuperNode started with ``--node-config "partition-id=0 data-dir='/data/site0'"`` trains and
evaluates on what that directory holds. Two layouts are accepted, per split (``train``,
``test`` and, optionally, ``val``)::

    <data-dir>/train.npz         x: [N, C, H, W] ([N, H, W] for gray, [N, H, W, C] for colour),
                                 uint8 0..255 or float 0..1
                                 y: [N] integer class labels 0..K-1
    <data-dir>/train/<label>/*   image files (PNG, JPEG, ...) in one folder per class,
                                 each folder named by its class index (0, 1, ..., K-1)

Class folders are named by index, not by name, because a client rarely holds every class
and the labels must mean the same thing on every node. Everything is checked against the
dataset the server configured (input shape, number of classes); a mismatch raises a
``ValueError`` that names the file and what to change.
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import numpy as np
import torch

from fedhyper.data.federated import ClientData
from fedhyper.data.specs import get_spec, standardise

SPLITS = ("train", "test", "val")  # val is optional
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}


def load_local(data_dir: str | Path, dataset: str) -> ClientData:
    """The client's train/test (and val) split from ``data_dir``, checked against ``dataset``; cached."""
    return _load_cached(str(Path(data_dir).expanduser().resolve()), dataset)


@functools.lru_cache(maxsize=2)
def _load_cached(data_dir: str, dataset: str) -> ClientData:
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data-dir={data_dir} is not a directory; point the node config's data-dir at the data")
    # Standardised with the dataset's own per-channel statistics, as the server's data is, so
    # generated weights see familiar inputs.
    spec = get_spec(dataset)
    input_shape, n_classes = spec.input_shape, spec.num_classes
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split in SPLITS:
        arrays = _read_split(root, split, input_shape)
        if arrays is None:
            if split != "val":
                raise ValueError(f"{root} holds neither {split}.npz nor a {split}/ folder; add the {split} split")
            arrays = (np.zeros((0, *input_shape), np.float32), np.zeros(0, np.int64))
        where, (x, y) = _source(root, split), arrays
        x, y = check_arrays(x, y, input_shape, n_classes, where)
        parts[split] = (standardise(torch.from_numpy(x), spec), torch.from_numpy(y))
    (xt, yt), (xs, ys), (xv, yv) = parts["train"], parts["test"], parts["val"]
    return ClientData(x_train=xt, y_train=yt, x_test=xs, y_test=ys, x_val=xv, y_val=yv)


def _source(root: Path, split: str) -> Path:
    npz = root / f"{split}.npz"
    return npz if npz.exists() else root / split


def _read_split(root: Path, split: str, input_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    npz, folder = root / f"{split}.npz", root / split
    if npz.exists() and folder.is_dir():
        raise ValueError(f"{root} holds both {npz.name} and {split}/; keep one of them")
    if npz.exists():
        return read_npz(npz)
    if folder.is_dir():
        return read_image_folder(folder, input_shape)
    return None


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x`` and ``y`` of an ``.npz`` file, unchecked."""
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle anything else
        raise ValueError(f"{path} is not a readable .npz file; write it with np.savez(path, x=images, y=labels)")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x", "y") if k not in arrays.files]
            if missing:
                raise ValueError(
                    f"{path} lacks array {' and '.join(missing)} (holds {', '.join(arrays.files) or 'nothing'}); "
                    "save it with np.savez(path, x=images, y=labels)"
                )
            return arrays["x"], arrays["y"]
    except (OSError, EOFError, zipfile.BadZipFile) as err:  # truncated, unreadable
        raise ValueError(f"{path} is not a readable .npz file ({err}); write it with np.savez") from err


def read_image_folder(folder: Path, input_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``folder/<label>/*`` as uint8 ``[N, C, H, W]`` with their labels, unchecked against classes."""
    try:
        from PIL import Image  # Pillow comes with matplotlib; only image folders need it
    except ImportError as err:
        raise ValueError(f"reading {folder} needs Pillow (pip install pillow), or use {folder.name}.npz") from err
    channels, height, width = input_shape
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise ValueError(f"image folders hold 1- or 3-channel images; the dataset wants {channels}: use .npz")
    images, labels = [], []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not class_dir.name.isdigit():
            raise ValueError(f"{class_dir} is not named by a class index; rename it to its label (0, 1, ...)")
        for file in sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            with Image.open(file) as img:
                if img.size != (width, height):
                    raise ValueError(f"{file} is {img.size[0]}x{img.size[1]}; resize it to {width}x{height}")
                pixels = np.asarray(img.convert(mode), dtype=np.uint8)
            images.append(pixels.reshape(height, width, channels).transpose(2, 0, 1))
            labels.append(int(class_dir.name))
    if not images:
        raise ValueError(f"{folder} holds no images; put them in {folder}/<label>/ folders")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def check_arrays(
    x: np.ndarray, y: np.ndarray, input_shape: tuple[int, int, int], n_classes: int, where: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``x``/``y`` against the dataset; return float32 pixels in 0..1 ``[N, C, H, W]`` and int64 labels."""
    given = list(x.shape)
    channels, height, width = input_shape
    if x.ndim == 3 and channels == 1:
        x = x[:, None]  # [N, H, W] -> [N, 1, H, W]
    if x.ndim == 4 and channels > 1 and tuple(x.shape[1:]) == (height, width, channels):
        x = x.transpose(0, 3, 1, 2)  # channels last, as PIL and most image arrays hold them
    if x.ndim != 4 or tuple(x.shape[1:]) != input_shape:
        alternative = f" or [N, {height}, {width}]" if channels == 1 else f" or [N, {height}, {width}, {channels}]"
        raise ValueError(
            f"{where}: x has shape {given}; the dataset wants [N, {channels}, {height}, {width}]{alternative}"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{where}: y has shape {list(y.shape)}; it must be [{len(x)}], one label per image of x")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: y is {y.dtype}; labels must be integers 0..{n_classes - 1}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{where}: labels span {y.min()}..{y.max()}; the dataset has classes 0..{n_classes - 1}")
    if x.dtype == np.uint8:
        pixels = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        pixels = x.astype(np.float32)
        if not np.isfinite(pixels).all() or (pixels.size and (pixels.min() < 0 or pixels.max() > 1)):
            raise ValueError(f"{where}: float pixels must be finite and within 0..1; scale them or store uint8")
    else:
        raise ValueError(f"{where}: x is {x.dtype}; store pixels as uint8 0..255 or float 0..1")
    if len(y) == 0 and where.stem != "val":
        raise ValueError(f"{where} holds no examples; every client needs train and test examples")
    return np.ascontiguousarray(pixels), y.astype(np.int64)
