"""Any dataset of the registry, pooled into the arrays the partitioners split.

Where the images come from, in this order:

1. ``data.root``: a folder holding a ``datasets.DatasetDict.save_to_disk`` copy, the hub's parquet
   files, or (for a dataset with an IDX default, Fashion-MNIST) its IDX files. Nothing is
   downloaded then.
2. The dataset's IDX folder (Fashion-MNIST's Debian package), when present.
3. The Hugging Face hub: ``datasets.load_dataset(spec.hub_id)``.

Every split is pooled, ``train`` first and the others by name: personalised FL cuts each
client's own share into train / val / test afterwards. Every image is checked against the
spec (size and channel count); a copy that does not fit raises a one-line ``ValueError`` that
names ``data.root`` and how to get the data.

Decoding every image with PIL is the slow part (each client process loads the dataset), so the
decoded array is kept in the partition cache's folder, keyed by a hash of the undecoded image
bytes and the spec's shape: the first process decodes, the others read one ``.npy`` file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedhyper.data import idx
from fedhyper.data.cache import write_atomic
from fedhyper.data.specs import DatasetSpec

log = logging.getLogger(__name__)
_MODES = {1: "L", 3: "RGB"}  # PIL modes of the channel counts images may have
_BATCH = 4096


@dataclass(frozen=True)
class Pooled:
    """Every example of a dataset, all splits together."""

    images: np.ndarray  # [N, C, H, W] uint8
    labels: np.ndarray  # [N] int64
    groups: np.ndarray | None  # [N] int64: each example's owner (the spec's natural key), ids in sorted order


def load_pooled(spec: DatasetSpec, root: str | None = None, cache: Path | None = None) -> Pooled:
    """The pooled dataset ``spec`` describes, from ``root`` if given, else its IDX folder, else the hub.

    ``cache``: a folder where decoded images are kept (None: decode every time).
    """
    if root:
        return _from_root(spec, root, decode=None, cache=cache)
    if spec.idx_dir is not None and spec.idx_dir.is_dir():
        return _from_idx(spec.idx_dir, spec, str(spec.idx_dir))
    log.info("fetching %s from the Hugging Face hub", spec.hub_id)
    return _from_splits(download(spec), spec, spec.hub_id, decode=None, cache=cache)


def check_root(spec: DatasetSpec, root: str, sample: int = 64) -> int | None:
    """Read ``root`` as ``load_pooled`` does, decoding only its first ``sample`` images (the launcher's
    check before any engine starts); return how many owners its examples have (None: no natural key)."""
    groups = _from_root(spec, root, decode=sample).groups
    return None if groups is None else int(groups.max()) + 1


def _from_root(spec: DatasetSpec, root: str, decode: int | None, cache: Path | None = None) -> Pooled:
    folder = Path(root).expanduser()
    where = f"data.root={root}"
    if not folder.is_dir():
        raise FileNotFoundError(f"{where} does not exist; {spec.how_to_get(root)}")
    if spec.idx_dir is not None and idx.holds_idx(folder):
        return _from_idx(folder, spec, where)
    return _from_splits(read_copy(folder, spec, where), spec, where, decode, cache)


def download(spec: DatasetSpec) -> dict:
    """Every split of ``spec.hub_id`` from the hub; FileNotFoundError saying how else to get it."""
    try:
        from datasets import load_dataset

        return dict(load_dataset(spec.hub_id))
    except Exception as err:  # the hub fails in many ways (offline, missing package, auth)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(
            f"{spec.title} could not be downloaded from the Hugging Face hub ({reason}); set data.root "
            f"to a folder holding a copy: {spec.how_to_get()}"
        ) from err


def read_copy(folder: Path, spec: DatasetSpec, where: str) -> dict:
    """The splits of a ``save_to_disk`` copy or of the hub's parquet files in ``folder``."""
    from datasets import DatasetDict, load_from_disk

    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        try:
            loaded = load_from_disk(str(folder))
        except Exception as err:  # a copy with missing or corrupt files
            raise ValueError(f"{where} holds an unreadable dataset copy ({err}); {spec.how_to_get()}") from err
        return dict(loaded) if isinstance(loaded, DatasetDict) else {"train": loaded}
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise ValueError(
            f"{where} holds no dataset (neither a save_to_disk copy with dataset_dict.json nor .parquet files); "
            f"{spec.how_to_get(str(folder))}"
        )
    return _read_parquet(files, spec, where)


def _read_parquet(files: list[Path], spec: DatasetSpec, where: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, concatenate_datasets
    from datasets.table import InMemoryTable

    by_split: dict[str, list] = {}
    for f in files:
        # The hub names them <split>-00000-of-00001.parquet, or <split>/0000.parquet once converted.
        split = f.stem.split("-")[0]
        split = f.parent.name if split.isdigit() else split
        try:
            # Features (Image, ClassLabel) come from the schema's "huggingface" metadata.
            by_split.setdefault(split, []).append(Dataset(InMemoryTable(pq.read_table(f))))
        except (OSError, pa.ArrowException) as err:
            raise ValueError(f"{where}: {f.name} is not a readable parquet file ({err}); {spec.how_to_get()}") from err
    return {s: concatenate_datasets(parts) for s, parts in by_split.items()}


def _from_idx(folder: Path, spec: DatasetSpec, where: str) -> Pooled:
    images, labels = idx.load_idx_dir(folder)
    channels, height, width = spec.input_shape
    if images.shape[1:] != (height, width) or channels != 1:
        raise ValueError(
            f"{where}: the IDX images are {images.shape[2]}x{images.shape[1]}; {spec.title} has "
            f"{width}x{height} images with {channels} channel(s)"
        )
    _check_labels(labels, spec, where)
    return Pooled(images=images[:, None], labels=labels, groups=None)


def _from_splits(splits: dict, spec: DatasetSpec, where: str, decode: int | None, cache: Path | None = None) -> Pooled:
    """Pool ``splits`` and check them; ``decode``: only the first so many images (None: all, through ``cache``)."""
    from datasets import concatenate_datasets

    order = sorted(splits, key=lambda s: (s != "train", s))
    for name in order:
        missing = [c for c in spec.columns if c not in splits[name].column_names]
        if missing:
            raise ValueError(
                f"{where}: split {name!r} lacks column {', '.join(map(repr, missing))} (it holds "
                f"{', '.join(splits[name].column_names)}); {spec.title} needs {', '.join(spec.columns)}: "
                f"{spec.how_to_get()}"
            )
    pooled = concatenate_datasets([splits[s].select_columns(list(spec.columns)) for s in order])
    labels = _column(pooled, spec.label_column).astype(np.int64)
    _check_labels(labels, spec, where)
    groups = None
    if spec.natural_key:
        groups = np.unique(_column(pooled, spec.natural_key), return_inverse=True)[1].astype(np.int64)
    if decode is not None:
        return Pooled(decode_images(pooled.select(range(min(decode, len(pooled)))), spec, where), labels, groups)
    return Pooled(images=cached_images(pooled, spec, where, cache), labels=labels, groups=groups)


def cached_images(ds, spec: DatasetSpec, where: str, cache: Path | None) -> np.ndarray:
    """``decode_images(ds, ...)``, read from ``cache`` when an earlier process decoded the same bytes."""
    if cache is None:
        return decode_images(ds, spec, where)
    path = cache / f"images-{spec.name}-{image_key(ds, spec)}.npy"
    if path.is_file():
        try:
            images = np.load(path)
            if images.shape == (len(ds), *spec.input_shape) and images.dtype == np.uint8:
                return images
            log.warning("decoded-image cache %s does not match its key; decoding again", path)
        except (OSError, ValueError) as err:
            log.warning("decoded-image cache %s cannot be read (%s); decoding again", path, err)
    images = decode_images(ds, spec, where)
    write_atomic(path, lambda fh: np.save(fh, images), "decoded-image")
    return images


def image_key(ds, spec: DatasetSpec) -> str:
    """A hex digest of the undecoded image column (bytes, or path with size and time) and the spec's shape."""
    from datasets import Image

    h = hashlib.sha256(repr((spec.name, spec.input_shape, len(ds))).encode())
    column = spec.image_column
    raw = ds.select_columns([column]).cast_column(column, Image(decode=False))
    for batch in raw.iter(batch_size=_BATCH):
        for item in batch[column]:
            if item["bytes"]:
                h.update(len(item["bytes"]).to_bytes(8, "little"))
                h.update(item["bytes"])
            else:
                stat = os.stat(item["path"])
                h.update(repr((item["path"], stat.st_size, stat.st_mtime_ns)).encode())
    return h.hexdigest()[:32]


def _column(ds, name: str) -> np.ndarray:
    return np.asarray(ds.select_columns([name]).with_format("numpy")[:][name])


def _check_labels(labels: np.ndarray, spec: DatasetSpec, where: str) -> None:
    if len(labels) == 0:
        raise ValueError(f"{where} holds no examples; {spec.how_to_get()}")
    if labels.min() < 0 or labels.max() >= spec.num_classes:
        raise ValueError(
            f"{where}: column {spec.label_column!r} spans {labels.min()}..{labels.max()}; {spec.title} has "
            f"classes 0..{spec.num_classes - 1}"
        )


def decode_images(ds, spec: DatasetSpec, where: str) -> np.ndarray:
    """The image column of ``ds`` as uint8 ``[N, C, H, W]``, every image checked against ``spec``."""
    from datasets import Image
    from PIL import Image as PILImage

    channels, height, width = spec.input_shape
    column = spec.image_column
    try:
        raw = ds.select_columns([column]).cast_column(column, Image(decode=False))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: column {column!r} does not hold images ({err}); {spec.how_to_get()}") from err
    out = np.empty((len(ds), channels, height, width), np.uint8)
    i = 0
    for batch in raw.iter(batch_size=_BATCH):
        for item in batch[column]:
            with PILImage.open(io.BytesIO(item["bytes"]) if item["bytes"] else item["path"]) as img:
                bands = len(img.getbands())
                if img.size != (width, height) or bands != channels:
                    raise ValueError(
                        f"{where}: image {i} is {img.size[0]}x{img.size[1]} with {bands} channel(s); {spec.title} "
                        f"has {width}x{height} images with {channels} (choose the data= that matches the copy); "
                        f"{spec.how_to_get()}"
                    )
                pixels = np.asarray(img if img.mode == _MODES[channels] else img.convert(_MODES[channels]))
            out[i] = pixels.reshape(height, width, channels).transpose(2, 0, 1)
            i += 1
    return out
