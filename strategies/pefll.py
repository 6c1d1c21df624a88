"""PeFLL: the hypernetwork reads a descriptor that each client computes from its own data.

Scott, Zakerinia, Lampert. "PeFLL: Personalized Federated Learning by Learning to Learn".
ICLR 2024. https://arxiv.org/abs/2306.05515

With ``hnet.input=data`` there is no embedding table: client i describes itself by
v_i = mean ψ(x, y) over its training examples (``fedhyper.descriptor``), and the hypernetwork
maps v_i to its weights θ̃_i = h(v_i; Φ). The server owns the embedding network ψ and trains it
with Φ. A training round is three exchanges:

1. ``query.descriptor``: ψ out, v_i back; a client without a usable descriptor sits the round out;
2. ``train``: θ̃_i out, θ_i back; pFedHN's step of Φ also yields each client's dL/dv_i;
3. ``query.descriptor_grad``: the same ψ and dL/dv_i out, (∂v_i/∂ψ)ᵀ dL/dv_i back; their sum,
   weighted as the hypernetwork's step weights its clients, steps ψ.

An evaluation describes the evaluated clients and sends each h(v_i), so a client that never
trained (a new one) gets its personalised model the same way: describe, then generate.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedhyper import protocol, validation
from fedhyper.config import ExperimentConfig
from fedhyper.data import dataset_info
from fedhyper.descriptor import DescriptorNet
from fedhyper.hypergrad import example_weights
from fedhyper.outer import HyperNetTrainer
from strategies.base import stacked_replies, train_summary
from strategies.directory import ClientDirectory
from strategies.pfedhn import PFedHN, build_trainer
from strategies.replies import Reply, ReplySorter, identify, read_arrays


class ArrayReplies(ReplySorter):
    """Checks replies to a query that carry one array record of known tensors (v_i, or ψ's gradient).

    Rejections are counted with the train and evaluation replies' (one ``rejected_replies``).
    """

    def __init__(self, replies: ReplySorter, record: str, what: str) -> None:
        super().__init__(replies.directory, max_update_norm=0.0)
        self.rejected = replies.rejected
        self.record, self.what = record, what
        self.expected: dict[str, torch.Tensor] = {}

    def check(
        self, server_round: int, replies: Iterable[Message], asked: Collection[int], expected: dict[str, torch.Tensor]
    ) -> dict[int, Reply]:
        """Valid replies by client id; ``expected`` names the tensors and shapes a reply must hold."""
        self.expected = {n: torch.zeros(t.shape) for n, t in expected.items()}  # replies arrive on the CPU
        return self.sort(server_round, replies, asked)

    def reject(self, server_round: int, cid: int | str, code: str, detail: str) -> None:
        super().reject(server_round, cid, code, f"{self.what}: {detail}")

    def _check(
        self, msg: Message, node_cid: int | None, asked: Collection[int], sent: dict[int, ArrayRecord] | None
    ) -> tuple[int, Reply]:
        cid, metrics = identify(msg, node_cid, asked, (protocol.CLIENT_ID, protocol.NUM_EXAMPLES))
        arrays = read_arrays(msg, self.record)
        # Names, shapes and finiteness against zeros: the "update norm" is then the arrays' own norm.
        norm = validation.check_update(arrays, self.expected, max_update_norm=0.0)
        return cid, Reply(msg.content, metrics, arrays, norm)


class PeFLL(PFedHN):
    """pFedHN whose hypernetwork input is each client's descriptor v_i, from the server's ψ."""

    adapts_novel_clients = False  # a new client describes itself and is sent h(v_i): nothing to fit

    def __init__(self, cfg: ExperimentConfig, directory: ClientDirectory, trainer: HyperNetTrainer) -> None:
        if trainer.hnet.embeddings is not None:
            raise ValueError(f"PeFLL needs hnet.input=data, not hnet.input={cfg.hnet.input}")
        super().__init__(cfg, directory, trainer)
        input_shape, n_classes = dataset_info(cfg.data.name)
        with torch.random.fork_rng(devices=[]):  # ψ's own seeded draw; the global stream stays as it was
            torch.manual_seed(cfg.seed)
            psi = DescriptorNet(math.prod(input_shape), n_classes, trainer.hnet.body_input_dim)
        self.psi = psi.to(trainer.device)
        outer = cfg.strategy.outer
        self.psi_optimizer = torch.optim.SGD(
            self.psi.parameters(), lr=outer.embedding_lr or outer.lr, momentum=outer.momentum
        )
        self.descriptor_replies = ArrayReplies(self.replies, protocol.DESCRIPTOR, "descriptor")
        self.gradient_replies = ArrayReplies(self.replies, protocol.ARRAYS, "descriptor gradient")
        self._grid: Grid | None = None  # the grid of the round in progress (aggregate_train is not given it)
        self._config = ConfigRecord()
        self._round, self._phase = 0, "train"
        self._descriptors: dict[int, torch.Tensor] = {}  # this round's trainers: cid -> v_i [d]
        self.latest_descriptors: dict[int, torch.Tensor] = {}  # each client's last descriptor, for plots
        self._psi_sent = ArrayRecord()  # the ψ those descriptors came from, sent again with dL/dv_i

    # --- rounds: the grid and config are kept for the extra exchanges ------------------
    def _use(self, server_round: int, config: ConfigRecord, grid: Grid, phase: str) -> None:
        self._grid, self._phase, self._round = grid, phase, server_round + self.round_offset
        self._config = ConfigRecord({**config, **self.client_settings(), protocol.SERVER_ROUND: self._round})

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._use(server_round, config, grid, "train")
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._asked = sorted(self._sent)  # a client without a descriptor was sent nothing to train
        return messages

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid, clients: list[int] | None = None
    ) -> Iterable[Message]:
        self._use(server_round, config, grid, "evaluate")
        messages = list(super().configure_evaluate(server_round, arrays, config, grid, clients))
        self._asked = sorted(self.directory.client_of(m.metadata.dst_node_id) for m in messages)
        return messages

    # --- payloads: describe, then generate ------------------------------------------------
    def train_payloads(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        self._psi_sent = protocol.weights_to_record(self.psi.state_dict())
        self._descriptors = self.describe(client_ids, self._psi_sent)
        return self._generated(self._descriptors)

    def eval_payloads(self, client_ids: list[int]) -> dict[int, ArrayRecord]:
        return self._generated(self.describe(client_ids, protocol.weights_to_record(self.psi.state_dict())))

    def _generated(self, descriptors: dict[int, torch.Tensor]) -> dict[int, ArrayRecord]:
        """h(v_i) for each described client, cut to its width."""
        ids = sorted(descriptors)
        if not ids:
            return {}
        weights = self.trainer.generate(ids, descriptors=torch.stack([descriptors[c] for c in ids]))
        return {cid: protocol.weights_to_record(w) for cid, w in self.widths.split(ids, weights).items()}

    def describe(self, client_ids: list[int], psi: ArrayRecord) -> dict[int, torch.Tensor]:
        """Each client's descriptor v_i [d] under ``psi``; a client without a valid one is left out."""
        contents = {cid: RecordDict({protocol.ARRAYS: psi, protocol.CONFIG: self._config}) for cid in client_ids}
        replies = self._query(protocol.DESCRIPTOR_QUERY, contents)
        expected = {protocol.DESCRIPTOR: torch.zeros(self.trainer.hnet.body_input_dim)}
        valid = self.descriptor_replies.check(self._round, replies, client_ids, expected)
        self._count(protocol.DESCRIPTOR_ACTION, valid, len(client_ids))
        described = {cid: r.weights[protocol.DESCRIPTOR] for cid, r in valid.items()}
        self.latest_descriptors.update(described)
        return described

    def _query(self, kind: str, contents: dict[int, RecordDict]) -> list[Message]:
        if self._grid is None:
            raise ValueError("PeFLL queries its clients through the grid of configure_train/configure_evaluate")
        messages = [Message(c, dst_node_id=self.directory.node(cid), message_type=kind) for cid, c in contents.items()]
        key = f"{self._phase}_{kind.removeprefix('query.')}_bytes_sent"
        sent = sum(r.count_bytes() for c in contents.values() for r in c.array_records.values())
        self.round_metrics[key] = self.round_metrics.get(key, 0) + sent
        return list(self._grid.send_and_receive(messages, timeout=self.sim.round_timeout))

    def _count(self, action: str, valid: dict[int, Reply], asked: int) -> None:
        """Bytes received and clients left out of this phase's ``action`` exchange."""
        prefix = f"{self._phase}_{action}"
        received = sum(r.count_bytes() for v in valid.values() for r in v.content.array_records.values())
        for key, value in ((f"{prefix}_bytes_received", received), (f"{prefix}_rejected", asked - len(valid))):
            self.round_metrics[key] = self.round_metrics.get(key, 0) + value

    # --- the outer step: Φ from the trained weights, then ψ from dL/dv_i --------------------
    def apply_train(self, server_round: int, replies: dict[int, Reply]) -> dict[str, float]:
        ids = sorted(replies)
        descriptors = torch.stack([self._descriptors[c] for c in ids]).requires_grad_(True)  # [B, d]
        if self.widths.varied:  # narrow replies inside what the step generates again: Δ_i = 0 outside a slice
            generated = self.trainer.generate(ids, descriptors=descriptors)
            trained = self.widths.join(ids, {c: replies[c].weights for c in ids}, generated)
        else:
            trained = stacked_replies(replies, ids)
        counts = {c: replies[c].num_examples for c in ids}
        grad_norm = self.trainer.step(ids, trained, list(counts.values()), descriptors=descriptors)
        psi = self.step_psi(ids, descriptors.grad, counts)
        return {**train_summary(replies), "grad_norm": grad_norm, **psi}

    def step_psi(self, client_ids: list[int], grad_v: torch.Tensor, counts: dict[int, int]) -> dict[str, float]:
        """Send each client ψ and its dL/dv_i [B, d]; step ψ along the weighted sum of their answers."""
        contents = {
            cid: RecordDict(
                {
                    protocol.ARRAYS: self._psi_sent,
                    protocol.DESCRIPTOR_GRAD: protocol.weights_to_record({protocol.DESCRIPTOR_GRAD: grad_v[b]}),
                    protocol.CONFIG: self._config,
                }
            )
            for b, cid in enumerate(client_ids)
        }
        replies = self._query(protocol.DESCRIPTOR_GRAD_QUERY, contents)
        psi = dict(self.psi.named_parameters())
        valid = self.gradient_replies.check(self._round, replies, client_ids, psi)
        self._count(protocol.DESCRIPTOR_GRAD_ACTION, valid, len(client_ids))
        if not valid:
            return {"psi_clients": 0}
        answered = sorted(valid)
        weights = example_weights([counts[c] for c in answered], self.trainer.cfg.aggregate)  # [B']
        for name, p in psi.items():
            p.grad = torch.tensordot(weights, torch.stack([valid[c].weights[name] for c in answered]), dims=1).to(p)
        norm = torch.nn.utils.clip_grad_norm_(self.psi.parameters(), self.trainer.cfg.grad_clip or float("inf"))
        self.psi_optimizer.step()
        self.psi_optimizer.zero_grad(set_to_none=True)
        return {"psi_grad_norm": float(norm), "psi_clients": len(answered)}

    # --- record and checkpoint -----------------------------------------------------------------
    def client_vectors(self) -> dict[int, torch.Tensor] | None:
        """The clients' descriptors as last computed (the final evaluation describes every evaluated client)."""
        return {cid: v.detach().cpu() for cid, v in self.latest_descriptors.items()}

    def summary_extras(self) -> dict[str, Any]:
        return {**super().summary_extras(), "descriptor_parameters": sum(p.numel() for p in self.psi.parameters())}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "psi": self.psi.state_dict(), "psi_optimizer": self.psi_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.psi.load_state_dict(state["psi"])
        self.psi_optimizer.load_state_dict(state["psi_optimizer"])


def build(cfg: ExperimentConfig, directory: ClientDirectory, exclude: tuple[str, ...] = ()) -> PeFLL:
    """PeFLL for ``cfg`` (``hnet.input=data``), its hypernetwork over the target's tensors but ``exclude``."""
    return PeFLL(cfg, directory, build_trainer(cfg, exclude))
