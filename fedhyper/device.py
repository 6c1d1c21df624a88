"""Where tensors live: the GPU when one is present (or asked for), else the CPU."""

from __future__ import annotations

import torch


def select_device(preference: str = "auto") -> torch.device:
    """Resolve ``auto`` / ``cpu`` / ``cuda[:n]`` to a device that exists on this machine."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={preference} was asked for but this machine has no CUDA GPU; use device=cpu")
    return torch.device(preference)
