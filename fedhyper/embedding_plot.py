"""The learned client embeddings in two dimensions, coloured by each client's dominant classes.

Clients with similar data should end up near each other if the hypernetwork has learned
something about them (pFedHN, figure 4, shows this on CIFAR). The projection is onto the
first two principal components of the embedding table; each point is a client, filled with
the colour of its most frequent training class and ringed with the colour of its second.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def principal_components(vectors: torch.Tensor, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of ``vectors`` [N, d] on their first ``k`` principal axes [N, k], and each axis's
    share of the variance [k]."""
    centred = vectors.double() - vectors.double().mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    coords = centred @ vh[:k].T
    if coords.shape[1] < k:  # fewer dimensions than k: pad with zeros
        coords = torch.cat([coords, torch.zeros(len(coords), k - coords.shape[1], dtype=coords.dtype)], dim=1)
    share = (s**2 / (s**2).sum().clamp_min(1e-12))[:k]
    return coords.numpy(), np.pad(share.numpy(), (0, k - len(share)))


def dominant_classes(label_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each client's most and second most frequent class from [N, C] counts."""
    order = np.argsort(-label_counts, axis=1, kind="stable")
    return order[:, 0], order[:, 1] if label_counts.shape[1] > 1 else order[:, 0]


def plot_embeddings(
    vectors: torch.Tensor,
    path: Path,
    label_counts: np.ndarray | None = None,
    novel: list[int] | None = None,
    title: str = "client embeddings",
) -> None:
    """Write the 2-D projection of ``vectors`` [N, d]; ``label_counts`` [N, C] colours the points."""
    coords, share = principal_components(vectors)
    fig = Figure(figsize=(6.0, 5.0))
    ax = fig.add_subplot()
    if label_counts is not None:
        first, second = dominant_classes(label_counts)
        cmap = matplotlib.colormaps["tab10"]
        ax.scatter(coords[:, 0], coords[:, 1], c=cmap(first % 10), edgecolors=cmap(second % 10), s=110, linewidths=2.0)
        for cls in sorted(set(first.tolist())):
            ax.scatter([], [], color=cmap(cls % 10), label=f"class {cls}")
        ax.legend(title="dominant class", fontsize=7, loc="best")
    else:
        ax.scatter(coords[:, 0], coords[:, 1], s=40)
    if novel:
        ax.scatter(coords[novel, 0], coords[novel, 1], marker="x", c="black", s=30, label="novel")
    ax.set_xlabel(f"PC 1 ({share[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({share[1]:.0%} of variance)")
    ax.set_title(title)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
