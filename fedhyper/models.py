"""Target networks: ordinary ``nn.Module``s whose weights a hypernetwork generates.

Generated weights are applied with ``torch.func.functional_call``; no model here has a
``forward(weights=...)`` variant. A model of width w < 1 (``ModelConfig.width_multipliers``)
scales every hidden size by w; its tensors are the leading slices of the full-width model's
(``fedhyper.widths``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

MODELS = ("cnn", "mlp")


@dataclass
class ModelConfig:
    """The target network every client runs."""

    name: str = "cnn"  # cnn: pFedHN's LeNet-style CNN; mlp: two hidden layers
    n_kernels: int = 16  # cnn: channels of the first conv (the second has twice as many)
    hidden: int = 200  # mlp: width of each hidden layer
    # Clients of different compute budgets (pFedHN, section 5.4): client i runs a model whose
    # hidden sizes are scaled by width_multipliers[i % len]; empty: every client at full width.
    width_multipliers: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Floats on the wire: a Flower ConfigRecord refuses a list that mixes ints and floats.
        self.width_multipliers = [float(w) for w in self.width_multipliers]

    def validate(self) -> None:
        bad = [w for w in self.width_multipliers if not 0 < w <= 1]
        if bad:
            raise ValueError(f"model.width_multipliers={self.width_multipliers}: each must be in (0, 1], not {bad}")


def client_width(cfg: ModelConfig, cid: int) -> float:
    """The width multiplier of client ``cid``'s target model: 1.0 unless ``cfg.width_multipliers`` says."""
    return cfg.width_multipliers[cid % len(cfg.width_multipliers)] if cfg.width_multipliers else 1.0


def scaled(size: int, width: float) -> int:
    """A hidden size at ``width``: rounded, at least one unit."""
    return max(1, round(size * width))


class CNNTarget(nn.Module):
    """pFedHN's LeNet-style CNN: two 5x5 conv/pool stages and three dense layers."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        n_classes: int = 10,
        n_kernels: int = 16,
        hidden: tuple[int, int] = (120, 84),
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, n_kernels, 5)
        self.conv2 = nn.Conv2d(n_kernels, 2 * n_kernels, 5)
        side = ((image_size - 4) // 2 - 4) // 2  # 28 -> 4, 32 -> 5
        # flatten is channel-major, so a narrower model's fc1 inputs are the first ones of a wider model's
        self.fc1 = nn.Linear(2 * n_kernels * side * side, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


class MLPTarget(nn.Module):
    """A two-hidden-layer perceptron over flattened inputs."""

    def __init__(self, in_features: int, n_classes: int = 10, hidden: int = 200):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


def build_model(cfg: ModelConfig, input_shape: tuple[int, int, int], n_classes: int, width: float = 1.0) -> nn.Module:
    """Instantiate the target network ``cfg`` names for inputs of ``input_shape`` (C, H, W).

    ``width`` scales every hidden size (channels, dense units); inputs and classes stay.
    """
    channels, height, side = input_shape
    if cfg.name == "cnn":
        if height != side:
            raise ValueError(f"model=cnn expects square images, got {height}x{side}")
        hidden = (scaled(120, width), scaled(84, width))
        return CNNTarget(channels, height, n_classes, scaled(cfg.n_kernels, width), hidden)
    if cfg.name == "mlp":
        return MLPTarget(channels * height * side, n_classes, scaled(cfg.hidden, width))
    raise ValueError(f"model.name={cfg.name!r} is unknown; choose one of {', '.join(MODELS)}")


def target_shapes(model: nn.Module) -> dict[str, torch.Size]:
    """Name and shape of every parameter a hypernetwork must generate, in module order."""
    return {name: p.shape for name, p in model.named_parameters()}


def apply(model: nn.Module, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``x`` with ``weights`` in place of its own parameters."""
    return functional_call(model, weights, (x,))


def head_names(model: nn.Module) -> list[str]:
    """The classifier head: the parameters of the model's last ``nn.Linear`` layer.

    Body/head methods (FedPer, FedRep, LG-FedAvg, pFedHN-PC) split a model here: the body is
    every other parameter.
    """
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to serve as a classifier head")
    return [f"{last}.{p}" for p, _ in model.get_submodule(last).named_parameters()]


def initial_weights(
    cfg: ModelConfig, input_shape: tuple[int, int, int], n_classes: int, seed: int, width: float = 1.0
) -> dict:
    """The target network's standard initialisation for ``seed`` at ``width``: name -> tensor.

    Server and clients call this with the same seed and get the same tensors, so a part a
    client keeps to itself starts where the server's copy of the rest started.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg, input_shape, n_classes, width)
    return {name: p.detach().clone() for name, p in model.named_parameters()}
