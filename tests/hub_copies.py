"""Small copies of hub datasets in each one's own schema, written as ``DatasetDict.save_to_disk`` does.

Built from the registry's spec (columns, image shape, class count), plus the columns the hub's
copies carry beside them, so the loader reads them through its real path. Each image is a
class-dependent grey level (or colour) with noise, so a model can learn something from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedhyper.data.specs import DatasetSpec

# Columns the hub's copies hold beside the spec's own: (name, feature, value of row i).
_EXTRA = {
    "cifar100": [("coarse_label", lambda: _class_label(20), lambda i, y: y % 20)],
    "femnist": [("hsf_id", lambda: _value("int64"), lambda i, y: i % 8)],
}


def _class_label(n: int):
    from datasets import ClassLabel

    return ClassLabel(num_classes=n)


def _value(dtype: str):
    from datasets import Value

    return Value(dtype)


def images_for(labels: np.ndarray, shape: tuple[int, int, int], seed: int) -> list[np.ndarray]:
    """One uint8 image a label, [H, W] for gray and [H, W, 3] for colour, its level set by its label."""
    channels, height, width = shape
    rng = np.random.default_rng(seed)
    base = (labels[:, None] * np.array([37, 91, 53][:channels]) + 20) % 200  # [N, C]
    noise = rng.integers(0, 50, (len(labels), height, width, channels))
    pixels = (base[:, None, None, :] + noise).astype(np.uint8)
    return [p[..., 0] if channels == 1 else p for p in pixels]


def build_copy(
    spec: DatasetSpec,
    folder: Path,
    per_class: int = 8,
    owners: int = 0,
    shape: tuple[int, int, int] | None = None,
    drop: str | None = None,
) -> Path:
    """Write a copy of ``spec``'s dataset to ``folder`` and return it.

    ``per_class`` training images a class (a quarter as many in ``test``; a naturally partitioned
    set has only ``train``, as FEMNIST's hub copy does), spread over ``owners`` writers;
    ``shape`` gives the images another (C, H, W); ``drop`` leaves a column out.
    """
    from datasets import Dataset, DatasetDict, Features, Image

    splits = {"train": per_class} if spec.natural_key else {"train": per_class, "test": max(1, per_class // 4)}
    dd = {}
    for s, (split, count) in enumerate(splits.items()):
        labels = np.tile(np.arange(spec.num_classes), count)
        n = len(labels)
        columns = {spec.image_column: images_for(labels, shape or spec.input_shape, seed=s), spec.label_column: labels}
        features = {spec.image_column: Image(), spec.label_column: _class_label(spec.num_classes)}
        if spec.natural_key:
            columns[spec.natural_key] = [f"f{i % owners:04d}_{i % owners % 90:02d}" for i in range(n)]
            features[spec.natural_key] = _value("string")
        for name, feature, value in _EXTRA.get(spec.name, []):
            columns[name] = [value(i, int(y)) for i, y in enumerate(labels)]
            features[name] = feature()
        if drop:
            columns.pop(drop)
            features.pop(drop)
        dd[split] = Dataset.from_dict(columns, features=Features(features))
    DatasetDict(dd).save_to_disk(str(folder))
    return folder
