"""Checkpoints a run can continue from: written beside, then renamed into place.

A checkpoint holds everything the server needs to go on as if never stopped: the
strategy's state (hypernetwork, embeddings, optimiser, per-client state, samplers), the
round, the random-number states and the metrics so far. Clients keep no state the server
must restore: their data and batch order follow from the seed and the round.

A checkpoint is data, not code: it is read with ``torch.load(..., weights_only=True)``, whose
unpickler builds only tensors and plain containers and numbers (every piece's ``state_dict``
keeps to those: the privacy accountant's is Flower's plain dict), so a file altered to run code
when loaded is refused before anything in it runs.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

FORMAT = "fedhyper-checkpoint"
VERSION = 2  # 2: one entry per piece of the round loop (strategy, schedule, faults, replies, ...)
FILENAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    with open(tmp, "wb") as fh:
        fh.write(buffer.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint, or raise ValueError saying why it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}; was the run started with sim.checkpoint_every > 0?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only met something other than tensors and plain data
        first = str(err).strip().splitlines()[-1][:160] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} refused: it holds objects a fedhyper checkpoint never does ({first})") from err
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise ValueError(
            f"{path} is truncated or not a checkpoint ({type(err).__name__}); delete it or resume elsewhere"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fedhyper checkpoint")
    if state.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {state.get('version')}; this fedhyper reads version {VERSION}")
    return state
