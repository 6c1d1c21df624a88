"""Where tensors live: the GPU when one is present (or asked for), else the CPU."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch


def select_device(preference: str = "auto") -> torch.device:
    """Resolve ``auto`` / ``cpu`` / ``cuda[:n]`` to a device that exists on this machine."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={preference} was asked for but this machine has no CUDA GPU; use device=cpu")
    return torch.device(preference)


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``platform.processor()`` where there is no /proc)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    names = (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    return next(names, platform.processor() or platform.machine())


def machine() -> dict[str, Any]:
    """What ran a run, for its summary: the same config gives the same run, bit for bit, on one machine
    (either engine), but another CPU's arithmetic differs in the last bits, which training amplifies."""
    return {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the SIMD kernels torch chose: AVX2, AVX512...
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
