"""What every personalised strategy shares: clients addressed by id, one message each.

Flower's FedAvg sends one RecordDict to every sampled node; a personalised strategy sends
each client its own weights. ``PersonalizedStrategy`` runs Flower's ``Strategy.start`` loop
with evaluations sent in chunks (``run_rounds``) and replaces sampling, message construction
and reply checking; an algorithm supplies
what each client receives (``train_payloads`` / ``eval_payloads``), what it does with the
valid replies (``apply_train``) and the state it must checkpoint.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedhyper import protocol
from fedhyper.config import ExperimentConfig
from fedhyper.data import DataConfig, load_federated
from fedhyper.embedding_plot import plot_embeddings
from strategies.directory import ClientDirectory
from strategies.replies import Reply, ReplySorter

log = logging.getLogger("fedhyper")


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def per_client_records(client_ids: list[int], weights: dict[str, torch.Tensor]) -> dict[int, ArrayRecord]:
    """Each client's slice of batched weights (name -> [B, *shape], rows in ``client_ids`` order)."""
    return {cid: protocol.weights_to_record({n: w[b] for n, w in weights.items()}) for b, cid in enumerate(client_ids)}


def stacked_replies(replies: dict[int, Reply], client_ids: list[int]) -> dict[str, torch.Tensor]:
    """The replies' trained weights batched in ``client_ids`` order: name -> [B, *shape]."""
    names = replies[client_ids[0]].weights
    return {n: torch.stack([replies[c].weights[n] for c in client_ids]) for n in names}


def train_summary(replies: dict[int, Reply]) -> dict[str, float]:
    """The round's example-weighted train loss and how many clients trained."""
    counts = [r.num_examples for r in replies.values()]
    losses = [float(r.metrics[protocol.TRAIN_LOSS]) for r in replies.values()]
    return {
        "train_loss": sum(loss * n for loss, n in zip(losses, counts, strict=True)) / sum(counts),
        "train_clients": len(replies),
    }


def split_summary(replies: dict[int, Reply], keys: tuple[str, str, str], prefix: str) -> dict[str, float]:
    """One split's accuracy as the mean over clients and pooled over all their examples, and its loss.

    ``keys``: the replies' (examples, loss, accuracy) metric names; clients without an example of
    the split, or that did not evaluate it, are left out.
    """
    count, loss, accuracy = keys
    used = {cid: r.metrics for cid, r in replies.items() if int(r.metrics.get(count, 0)) > 0 and accuracy in r.metrics}
    if not used:
        return {}
    acc = {cid: float(m[accuracy]) for cid, m in used.items()}
    n = {cid: int(m[count]) for cid, m in used.items()}
    return {
        f"{prefix}accuracy": float(np.mean(list(acc.values()))),
        f"{prefix}accuracy_pooled": sum(acc[c] * n[c] for c in acc) / sum(n.values()),  # all examples together
        f"{prefix}loss": float(np.mean([m[loss] for m in used.values()])),
        f"{prefix}clients": len(acc),
    }


TEST_SPLIT = (protocol.NUM_EXAMPLES, protocol.EVAL_LOSS, protocol.EVAL_ACCURACY)
VAL_SPLIT = (protocol.NUM_VAL_EXAMPLES, protocol.VAL_LOSS, protocol.VAL_ACCURACY)


def evaluation_summary(replies: dict[int, Reply]) -> dict[str, float]:
    """Test and validation accuracy (mean over clients, and pooled), losses, and any uncertainty metrics."""
    test = split_summary(replies, TEST_SPLIT, "")
    result = {
        **({"accuracy": test["accuracy"], "accuracy_pooled": test["accuracy_pooled"],
            "eval_loss": test["loss"], "eval_clients": test["clients"]} if test else {}),  # fmt: skip
        **split_summary(replies, VAL_SPLIT, "val_"),
    }
    for key in protocol.UNCERTAINTY_METRICS:  # noise-conditioned ensembles report these
        values = [float(r.metrics[key]) for r in replies.values() if key in r.metrics]
        if values:
            result[key.replace("-", "_")] = float(np.mean(values))
    return result


class PersonalizedStrategy(Strategy):
    """Samples client ids with a seeded generator and evaluates every client's own model."""

    eval_chunk = 256  # clients whose weights are generated at once for evaluation
    # Whether held-out (novel) clients get rounds of their own after training (pFedHN fits their
    # embeddings); if not, they are only evaluated at the end, on what training left.
    adapts_novel_clients = False
    label_colour_limit = 1000  # clients: above this, embeddings.png is not coloured (the server would load the data)

    def __init__(self, cfg: ExperimentConfig, directory: ClientDirectory) -> None:
        self.directory = directory
        self.sim = cfg.sim
        self.faults = cfg.faults
        self.rng = np.random.default_rng(cfg.seed)  # client sampling
        self.fault_rng = np.random.default_rng([cfg.seed, 1])  # which clients fail, when asked to
        self.novel_ids = self._held_out(cfg.novel_clients, cfg.seed)
        self.train_ids = [c for c in directory.client_ids if c not in set(self.novel_ids)]
        self.eval_ids = self._evaluated(cfg.sim.eval_clients, cfg.seed)
        self.replies = ReplySorter(directory, cfg.sim.max_update_norm)
        self.round_offset = 0  # rounds done before Strategy.start began counting (a resumed run)
        self.accuracy: dict[int, float] = {}  # each client's accuracy at the last evaluation
        self.round_metrics: dict[str, float] = {}  # filled during a round, read by the reporter
        self.client_metrics: list[dict[str, Any]] = []  # every valid reply's metrics this round
        self._asked: list[int] = []  # the clients messaged in the current phase
        self._sent: dict[int, ArrayRecord] = {}  # what each of this round's trainers was sent

    # --- what an algorithm provides ------------------------------------------------
    @abstractmethod
    def train_payloads(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        """The arrays each sampled client trains from."""

    @abstractmethod
    def eval_payloads(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        """The arrays each client is evaluated with (its personalised model)."""

    @abstractmethod
    def apply_train(self, server_round: int, replies: dict[int, Reply]) -> dict[str, float]:
        """Fold a round's valid train replies into the server state; return round metrics."""

    def client_settings(self) -> dict[str, Any]:
        """What the clients must know of the algorithm: its client routine and that routine's settings."""
        return {protocol.ALGORITHM: protocol.ALGO_PLAIN}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run: extend in subclasses."""
        return {
            "rng": self.rng.bit_generator.state,
            "fault_rng": self.fault_rng.bit_generator.state,
            "accuracy": dict(self.accuracy),
            "rejected": dict(self.replies.rejected),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.fault_rng.bit_generator.state = state["fault_rng"]
        self.accuracy = {int(k): v for k, v in state["accuracy"].items()}
        self.replies.rejected.update(state["rejected"])

    # --- sampling and messages ------------------------------------------------------
    @property
    def total_rounds(self) -> int:
        """Training rounds, then the novel clients' own rounds where the strategy adapts them."""
        novel = self.sim.novel_rounds if self.novel_ids and self.adapts_novel_clients else 0
        return self.sim.num_rounds + novel

    def in_novel_phase(self, server_round: int) -> bool:
        return server_round > self.sim.num_rounds

    def sample(self, server_round: int = 0) -> list[int]:
        """This round's clients: from the training clients, or from the novel ones after training."""
        ids = self.novel_ids if self.in_novel_phase(server_round) else self.train_ids
        k = min(self.sim.clients_per_round, len(ids))
        return sorted(int(i) for i in self.rng.choice(ids, size=k, replace=False))

    def _held_out(self, k: int, seed: int) -> list[int]:
        """``novel_clients``: a seeded sample of clients that never train with the others."""
        if not k:
            return []
        ids = self.directory.client_ids
        return sorted(int(i) for i in np.random.default_rng([seed, 3]).choice(ids, size=k, replace=False))

    def _evaluated(self, k: int, seed: int) -> list[int]:
        """The trained clients every evaluation asks: all, or one seeded sample of ``k`` kept for the run."""
        ids = self.train_ids
        if not k or k >= len(ids):
            return list(ids)
        return sorted(int(i) for i in np.random.default_rng([seed, 2]).choice(ids, size=k, replace=False))

    def is_eval_round(self, server_round: int) -> bool:
        if server_round == self.total_rounds:
            return True
        return not self.in_novel_phase(server_round) and (
            server_round % self.sim.eval_every == 0 or server_round == self.sim.num_rounds
        )

    def evaluated_clients(self, server_round: int) -> list[int]:
        """Who an evaluation round asks: the trained clients, and the novel ones in the last round."""
        if not self.is_eval_round(server_round):
            return []
        return sorted(self.eval_ids + self.novel_ids) if server_round == self.total_rounds else self.eval_ids

    def _messages(self, payloads: dict[int, ArrayRecord], configs: dict[int, ConfigRecord], kind: str) -> list[Message]:
        """One message per client, to that client's node; counts the bytes of arrays sent."""
        messages = []
        for cid, arrays in payloads.items():
            content = RecordDict({protocol.ARRAYS: arrays, protocol.CONFIG: configs[cid]})
            messages.append(Message(content, dst_node_id=self.directory.node(cid), message_type=kind))
        key = f"{kind}_bytes_sent"
        self.round_metrics[key] = self.round_metrics.get(key, 0) + sum(a.count_bytes() for a in payloads.values())
        return messages

    def _fault_configs(self, client_ids: list[int], config: ConfigRecord) -> dict[int, ConfigRecord]:
        """The shared config, plus an order to fail for the fraction ``faults.fraction`` of clients."""
        configs = dict.fromkeys(client_ids, config)
        n_faulty = int(round(self.faults.fraction * len(client_ids)))
        for cid in self.fault_rng.choice(client_ids, size=n_faulty, replace=False) if n_faulty else []:
            configs[int(cid)] = ConfigRecord(
                {**config, protocol.FAULT: self.faults.kind, protocol.FAULT_SLEEP: self.sim.round_timeout + 2.0}
            )
        return configs

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        server_round += self.round_offset
        self.round_metrics, self.client_metrics = {}, []
        config = ConfigRecord({**config, **self.client_settings(), protocol.SERVER_ROUND: server_round})
        ids = self.sample(server_round)
        self._asked, self._sent = ids, self.train_payloads(ids)
        return self._messages(self._sent, self._fault_configs(ids, config), MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid, clients: list[int] | None = None
    ) -> Iterable[Message]:
        """One message per client this round evaluates, or per client of ``clients`` (one chunk of them)."""
        server_round += self.round_offset
        self._asked = self.evaluated_clients(server_round) if clients is None else list(clients)
        config = ConfigRecord({**config, **self.client_settings(), protocol.SERVER_ROUND: server_round})
        messages: list[Message] = []
        for ids in chunks(self._asked, self.eval_chunk):
            messages += self._messages(self.eval_payloads(ids), dict.fromkeys(ids, config), MessageType.EVALUATE)
        return messages

    # --- the loop -----------------------------------------------------------------------
    def run_rounds(
        self, grid: Grid, num_rounds: int, config: ConfigRecord, timeout: float, after_round: Callable[[int], None]
    ) -> None:
        """Flower's ``Strategy.start`` loop, with evaluations sent ``eval_chunk`` clients at a time.

        Round r trains the sampled clients, evaluates if r is an evaluation round, then calls
        ``after_round(r)``. Rounds count from 1 after ``round_offset`` (a resumed run's rounds done).
        """
        self.summary()
        for server_round in range(1, num_rounds + 1):
            messages = self.configure_train(server_round, ArrayRecord(), config, grid)
            self.aggregate_train(server_round, grid.send_and_receive(messages, timeout=timeout))
            if self.evaluated_clients(server_round + self.round_offset):
                self.evaluate(grid, server_round, config, timeout)
            after_round(server_round)

    def evaluate(self, grid: Grid, server_round: int, config: ConfigRecord, timeout: float) -> MetricRecord | None:
        """Evaluate this round's clients ``eval_chunk`` at a time; their mean accuracy and the rest.

        Flower's loop sends every message of a phase at once: evaluating 10,000 clients that way
        holds 10,000 models in the ServerApp's memory (and in Flower's message store, whose
        sweeps slow with it). A chunk's replies come back before the next chunk's models are
        generated, so the server holds at most ``eval_chunk`` models however many clients it has.
        """
        valid: dict[int, Reply] = {}
        for ids in chunks(self.evaluated_clients(server_round + self.round_offset), self.eval_chunk):
            messages = self.configure_evaluate(server_round, ArrayRecord(), config, grid, clients=ids)
            replies = grid.send_and_receive(messages, timeout=timeout)
            valid.update(self._sorted_replies(server_round + self.round_offset, replies, is_train=False))
        return self._evaluation_result(valid)

    # --- replies ----------------------------------------------------------------------
    def _sorted_replies(self, server_round: int, replies: Iterable[Message], is_train: bool) -> dict[int, Reply]:
        """The valid replies; counts of bytes, compute and rejections add up over a phase's chunks."""
        kind = MessageType.TRAIN if is_train else MessageType.EVALUATE
        valid = self.replies.sort(server_round, replies, self._asked, self._sent if is_train else None)
        counts = {
            "bytes_received": sum(
                sum(r.count_bytes() for r in v.content.array_records.values()) for v in valid.values()
            ),
            "client_compute_s": sum(float(v.metrics.get(protocol.COMPUTE_SECONDS, 0.0)) for v in valid.values()),
            "rejected": len(self._asked) - len(valid),
        }
        for key, value in counts.items():
            self.round_metrics[f"{kind}_{key}"] = self.round_metrics.get(f"{kind}_{key}", 0) + value
        self.client_metrics += [{"kind": kind, **v.metrics} for v in valid.values()]
        return valid

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Apply the valid replies, or change nothing when fewer than ``sim.min_replies`` came."""
        server_round += self.round_offset
        valid = self._sorted_replies(server_round, replies, is_train=True)
        if len(valid) < self.sim.min_replies:
            log.warning("round %d: %d valid replies < sim.min_replies=%d; nothing changes",
                        server_round, len(valid), self.sim.min_replies)  # fmt: skip
            return None, None
        self.round_metrics.update(self.apply_train(server_round, valid))
        # Metrics stay in fedhyper's record (metrics.jsonl); Flower's Result gets none per round.
        return None, None

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Mean over clients of each client's accuracy on its own test split."""
        return self._evaluation_result(self._sorted_replies(server_round + self.round_offset, replies, is_train=False))

    def _evaluation_result(self, valid: dict[int, Reply]) -> MetricRecord | None:
        if not valid:
            return None
        self.accuracy.update(  # clients with test examples, when the test split was read
            {cid: float(r.metrics[protocol.EVAL_ACCURACY]) for cid, r in valid.items()
             if protocol.EVAL_ACCURACY in r.metrics and r.num_examples > 0}  # fmt: skip
        )
        novel = set(self.novel_ids)
        trained = {c: r for c, r in valid.items() if c not in novel}
        result = evaluation_summary(trained) if trained else {}
        if novel & set(valid):
            held_out = evaluation_summary({c: r for c, r in valid.items() if c in novel})
            result.update({f"novel_{k}": v for k, v in held_out.items()})
            if "accuracy" in result:
                result["generalization_gap"] = result["accuracy"] - result["novel_accuracy"]
        self.round_metrics.update(result)
        return MetricRecord(result)

    def summary_extras(self) -> dict[str, Any]:
        """Facts about the strategy for summary.json (pFedHN: its parameter counts)."""
        return {}

    def client_vectors(self) -> dict[int, torch.Tensor] | None:
        """What the server knows each client by, client id -> [d] (pFedHN: its embedding), or None."""
        return None

    def write_figures(self, run_dir: Path, data: DataConfig, seed: int) -> None:
        """The client embeddings' 2-D projection (``embeddings.png``) for strategies that learn them.

        Points are coloured by each client's dominant classes when the server can read the
        partition (a simulation of up to ``label_colour_limit`` clients); otherwise plain.
        """
        vectors = self.client_vectors()
        if not vectors:
            return
        ids = sorted(vectors)
        counts = None
        if len(self.directory) <= self.label_colour_limit:
            try:
                counts = load_federated(data, seed).label_counts()[ids]
            except (OSError, ValueError) as err:  # a deployment's server may not have the data
                log.info("embeddings.png uncoloured: the server cannot read the partition (%s)", err)
        novel = [ids.index(c) for c in self.novel_ids if c in vectors]
        title = f"{type(self).__name__}: what the hypernetwork knows each client by"
        plot_embeddings(torch.stack([vectors[c] for c in ids]), run_dir / "embeddings.png", counts, novel, title)

    def summary(self) -> None:
        log.info(
            "%s: %d clients, %d per round, evaluation every %d rounds",
            type(self).__name__,
            len(self.directory),
            self.sim.clients_per_round,
            self.sim.eval_every,
        )
