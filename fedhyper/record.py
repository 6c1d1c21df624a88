"""A run's record, named once: its files, the metric names of its rows, and its typed summary.

A run directory holds ``metrics.jsonl`` (one row a round, keys below), ``clients.jsonl`` (one
row a client reply), ``summary.json`` (a ``Summary``), and where they apply ``config.yaml``,
``checkpoint.pt`` and ``embeddings.png`` (a run that stopped because it could not train: ``idle.json``
instead of ``summary.json``). The reporter writes them; the comparison and the launcher read them
through these names, so a misspelt name fails instead of reading None.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Files of a run directory.
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CLIENTS_FILE = "clients.jsonl"
SUMMARY_FILE = "summary.json"
INPROCESS, FLOWER = "inprocess", "flower"  # Summary.engine: what ran the run
EMBEDDINGS_FILE = "embeddings.png"
LOG_FILE = "run.log"  # the run's log lines, on the in-process engine and in a grid
# Written instead of the summary when the run stopped because it could not train (strategies.loop.IdleRun:
# every reply left out, round after round): {"round", "reason", DIVERGED}. DIVERGED true: every reply those
# rounds left out held NaN/Inf or an update over the bound, an outcome of the configuration, so a grid counts
# the run ended (a tuning trial failed, a grid's run reported as diverged) and does not run it again; false
# (clients raised or timed out), it runs it again. A run started again in its folder removes the file.
IDLE_FILE = "idle.json"
DIVERGED = "diverged"

# Keys of a metrics.jsonl row. Every row has ROUND and ELAPSED_S; the rest where they apply.
ROUND = "round"
ELAPSED_S = "elapsed_s"
TRAIN_LOSS = "train_loss"  # example-weighted over the round's valid train replies
TRAIN_CLIENTS = "train_clients"
TRAIN_GPU_CLIENTS = "train_gpu_clients"  # of those, the clients that trained on a GPU
GRAD_NORM = "grad_norm"  # the hypernetwork's outer gradient
ACCURACY = "accuracy"  # mean over clients of each one's accuracy on its own test split
ACCURACY_POOLED = "accuracy_pooled"  # all evaluated clients' test examples together
EVAL_LOSS = "eval_loss"
EVAL_CLIENTS = "eval_clients"
VAL = "val_"  # prefix: the same figures on the validation split (val_accuracy, val_accuracy_pooled, ...)
VAL_ACCURACY = f"{VAL}{ACCURACY}"
VAL_ACCURACY_POOLED = f"{VAL}{ACCURACY_POOLED}"
NOVEL = "novel_"  # prefix: the held-out clients' figures (novel_accuracy, ...)
NOVEL_ACCURACY = f"{NOVEL}{ACCURACY}"
GENERALIZATION_GAP = "generalization_gap"  # accuracy − novel_accuracy
CLIENT_KIND = "kind"  # clients.jsonl: the message type a reply answered
PRIVACY_EPSILON = "privacy_epsilon"  # privacy.*: ε spent at the run's δ after this round (null: σ = 0, no bound)


def traffic_key(exchange: str, what: str) -> str:
    """A round's traffic or rejection count: ``<exchange>_<what>``, e.g. ``train_bytes_sent``.

    ``exchange`` is the phase (``train``, ``evaluate``), or the phase and an extra exchange of it
    (``train_descriptor``); ``what`` one of ``TRAFFIC_COUNTS``.
    """
    if what not in TRAFFIC_COUNTS:
        raise ValueError(f"traffic count {what!r} is unknown; choose one of {', '.join(TRAFFIC_COUNTS)}")
    return f"{exchange}_{what}"


TRAFFIC_COUNTS = ("bytes_sent", "bytes_received", "client_compute_s", "rejected")
TRAIN_BYTES_SENT = traffic_key("train", "bytes_sent")
TRAIN_BYTES_RECEIVED = traffic_key("train", "bytes_received")
EVALUATE_BYTES_SENT = traffic_key("evaluate", "bytes_sent")
EVALUATE_BYTES_RECEIVED = traffic_key("evaluate", "bytes_received")
EVALUATE_REJECTED = traffic_key("evaluate", "rejected")


@dataclass
class Summary:
    """summary.json: what a finished run reached. Accuracies are fractions (0..1); None: not measured."""

    strategy: str
    num_clients: int
    rounds: int
    final_accuracy: float | None
    best_accuracy: float | None
    best_round: int | None
    final_accuracy_pooled: float | None  # every client's test examples together (the pFedHN paper's)
    best_accuracy_pooled: float | None
    val_accuracy: float | None  # mean over clients on their validation splits: what tuning reads
    best_val_accuracy: float | None
    val_accuracy_pooled: float | None
    per_client_accuracy: list[float]  # in client-id order
    wall_time_s: float
    seconds_to_accuracy: dict[str, float | None]  # target ("0.90") -> elapsed s at the first evaluation reaching it
    initial_accuracy: float | None  # round 0, before any training
    accuracy_by_width: dict[str, float] | None = None  # width ("0.5") -> mean accuracy, when clients differ
    # A hypernetwork's size (pFedHN, PeFLL).
    hnet_parameters: int | None = None
    hnet_shared_parameters: int | None = None
    target_parameters: int | None = None
    hnet_target_ratio: float | None = None
    descriptor_parameters: int | None = None  # PeFLL's embedding network ψ
    # Held-out clients (novel_clients > 0).
    novel_clients: list[int] | None = None
    novel_accuracy: float | None = None
    generalization_gap: float | None = None
    rejected_replies: dict[str, int] = field(default_factory=dict)  # reason -> count
    server_device: str | None = None
    # Of the run's valid training replies, the share computed on a GPU (clients report it); None: not reported.
    # A grid's runs may come from different machines: this and wall_time_s say which ran where.
    gpu_training_share: float | None = None
    message_sweep: str | None = None  # who handed messages to simulated clients: fedhyper or flower
    # What ran it: INPROCESS (simulations.inprocess) or FLOWER (Flower's simulation or deployment runtime);
    # None in runs recorded before it was (engine_of infers it).
    engine: str | None = None
    # The machine the ServerApp ran on (fedhyper.device.machine: CPU, its SIMD kernels, GPU, torch); with the
    # simulation's engines the clients ran there too. None in runs recorded before it was.
    machine: dict[str, Any] | None = None
    # privacy.*: epsilon, delta, noise_multiplier, clip, rounds, sample_size, population, accounting,
    # max_epsilon (fedhyper.privacy.Accountant.report); None without privacy.
    privacy: dict[str, Any] | None = None
    # CPU seconds the run's process spent, all its threads (time.process_time), over every resumed part: what
    # wall_time_s counts less the time the process waited (stopped, or sharing its cores). With the in-process
    # engine the clients trained in that process, so it is the whole run's (on a GPU, the host's share); None
    # where they did not (Flower's engines: the ServerApp's alone would read as the run's), and for runs
    # recorded, or resumed from checkpoints written, before it was counted.
    cpu_time_s: float | None = None

    def write(self, run_dir: Path) -> None:
        (Path(run_dir) / SUMMARY_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def read(cls, run_dir: Path) -> Summary:
        """A run's summary.json; ValueError when it holds keys this version does not know."""
        path = Path(run_dir) / SUMMARY_FILE
        values: dict[str, Any] = json.loads(path.read_text())
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{path} holds keys {unknown} that fedhyper.record.Summary does not define")
        return cls(**values)


def machine_label(machine: dict[str, Any] | None) -> str | None:
    """A summary's ``machine`` in a few words ("AMD EPYC (AVX512, 2 cores)"); None where it was not recorded."""
    if machine is None:
        return None
    gpu = f", {machine['gpu']}" if machine.get("gpu") else ""
    return f"{machine['cpu']} ({machine['cpu_capability']}, {machine['cores']} cores{gpu})"


def engine_of(summary: Summary) -> str:
    """The engine that ran a finished run (its summary's ``engine``). A run recorded before the summary
    named it ran on Flower's simulation if the launcher recorded its message sweep there, else in-process
    (older deployments, which no grid holds, read as in-process too)."""
    if summary.engine is not None:
        return summary.engine
    return FLOWER if summary.message_sweep is not None else INPROCESS
