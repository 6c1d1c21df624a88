"""Pure maths of shared-model strategies: weighted averages and body/head splits."""

from __future__ import annotations

from collections.abc import Collection

import torch


def weighted_mean(models: list[dict[str, torch.Tensor]], counts: list[int]) -> dict[str, torch.Tensor]:
    """Σ_i n_i θ_i / Σ_i n_i for every tensor name the models share (FedAvg's aggregate)."""
    if not models or len(models) != len(counts):
        raise ValueError(f"need one count per model, got {len(models)} models and {len(counts)} counts")
    if min(counts) <= 0:
        raise ValueError(f"example counts must be positive, got {counts}")
    total = float(sum(counts))
    return {
        name: sum(m[name].double() * (n / total) for m, n in zip(models, counts, strict=True)).to(models[0][name].dtype)
        for name in models[0]
    }


def select(weights: dict[str, torch.Tensor], names: Collection[str]) -> dict[str, torch.Tensor]:
    """The tensors of ``weights`` named in ``names``, in ``weights``' order."""
    return {n: w for n, w in weights.items() if n in names}


def without(weights: dict[str, torch.Tensor], names: Collection[str]) -> dict[str, torch.Tensor]:
    """The tensors of ``weights`` not named in ``names``."""
    return {n: w for n, w in weights.items() if n not in names}
