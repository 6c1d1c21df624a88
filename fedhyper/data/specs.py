"""Every dataset fedhyper knows, described once: the loader, the models, real clients' data checks,
the ConfigStore, the launcher's checks and the benchmarks all read this registry.

A dataset is an image classification set on the Hugging Face hub: its id, the image and label
columns, the image shape, the class count, the per-channel statistics that standardise its
pixels and, for naturally partitioned sets, the column that names each example's owner
(FEMNIST's writer). Adding one is one ``register(DatasetSpec(...))`` below plus its tests
(docs/datasets.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: where it lives, what its columns hold, and how its pixels are standardised."""

    name: str  # data=<name>
    title: str  # how messages name it
    hub_id: str  # the Hugging Face hub repository, downloaded when data.root is not given
    image_column: str
    label_column: str  # integer class labels 0..num_classes-1 (a ClassLabel on the hub)
    input_shape: tuple[int, int, int]  # (C, H, W) of every image
    num_classes: int
    # Per-channel mean and standard deviation of pixels scaled to 0..1, one value per channel.
    mean: tuple[float, ...]
    std: tuple[float, ...]
    natural_key: str | None = None  # the column naming each example's owner; data.partition=natural
    # A folder of IDX files read when data.root is not given, and the Debian package that fills it.
    idx_dir: Path | None = None
    idx_package: str | None = None

    def __post_init__(self) -> None:
        channels = self.input_shape[0]
        if channels not in (1, 3):
            raise ValueError(f"dataset {self.name}: images have 1 (gray) or 3 (RGB) channels, not {channels}")
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"dataset {self.name}: give one mean and one std per channel ({channels})")

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns a copy of the dataset must hold."""
        return tuple(c for c in (self.image_column, self.label_column, self.natural_key) if c)

    def how_to_get(self, root: str = "<folder>") -> str:
        """One sentence saying how to get a copy the loader reads."""
        package = f"apt-get install {self.idx_package} (it fills {self.idx_dir}), " if self.idx_package else ""
        return (
            f'{package}on a machine with network run python -c "import datasets; datasets.load_dataset('
            f"'{self.hub_id}').save_to_disk('{root}')\" and copy the folder here (or the hub's parquet files), "
            f"or leave data.root unset to download {self.hub_id}"
        )


SPECS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry; a second dataset of the same name is refused."""
    if spec.name in SPECS:
        raise ValueError(f"dataset {spec.name!r} is registered twice; give the new one another name")
    SPECS[spec.name] = spec
    return spec


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name``; a ValueError naming the known ones otherwise."""
    if name not in SPECS:
        raise ValueError(f"data={name!r} is unknown; choose one of {', '.join(SPECS)}")
    return SPECS[name]


def standardise(pixels: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """Standardise float pixels in 0..1 ``[N, C, H, W]`` in place, channel by channel; returns them.

    One channel at a time with Python scalars, so that a one-channel set gets exactly the bits of
    ``x.sub_(mean).div_(std)`` (a broadcast tensor divides, a scalar multiplies by its reciprocal).
    """
    for c, (m, s) in enumerate(zip(spec.mean, spec.std, strict=True)):
        pixels[:, c].sub_(m).div_(s)
    return pixels


# Statistics of the training images. Fashion-MNIST's are the values fedhyper always used (its runs
# stay bit for bit the same); CIFAR's are the commonly published training-set values.
register(DatasetSpec(
    name="fmnist", title="Fashion-MNIST", hub_id="zalando-datasets/fashion_mnist",
    image_column="image", label_column="label", input_shape=(1, 28, 28), num_classes=10,
    mean=(0.2860,), std=(0.3530,),
    idx_dir=Path("/usr/share/datasets/fashion-mnist"), idx_package="dataset-fashion-mnist",
))  # fmt: skip
register(DatasetSpec(
    name="cifar10", title="CIFAR-10", hub_id="uoft-cs/cifar10",
    image_column="img", label_column="label", input_shape=(3, 32, 32), num_classes=10,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2430, 0.2610),
))  # fmt: skip
register(DatasetSpec(
    name="cifar100", title="CIFAR-100", hub_id="uoft-cs/cifar100",
    image_column="img", label_column="fine_label", input_shape=(3, 32, 32), num_classes=100,
    mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761),
))  # fmt: skip
# FEMNIST (LEAF's federated EMNIST, 62 classes, one writer per client). No copy was at hand to
# measure its statistics, so 0.5 / 0.5 maps pixels to -1..1 rather than claiming measured values.
register(DatasetSpec(
    name="femnist", title="FEMNIST", hub_id="flwrlabs/femnist",
    image_column="image", label_column="character", input_shape=(1, 28, 28), num_classes=62,
    mean=(0.5,), std=(0.5,), natural_key="writer_id",
))  # fmt: skip
