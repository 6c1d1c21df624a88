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
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from flwr.app import ArrayRecord

from fedhyper import protocol, record
from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from fedhyper.data import dataset_info
from fedhyper.descriptor import DescriptorNet
from fedhyper.outer import HyperNetTrainer
from strategies.base import RoundPlan
from strategies.directory import ClientDirectory
from strategies.evaluation import train_summary
from strategies.exchange import Exchange
from strategies.pfedhn import PFedHN, PFedHNConfig, build_trainer
from strategies.replies import Reply, arrays_check


@dataclass
class PeFLLConfig(PFedHNConfig):
    """pFedHN's outer and local training; ψ steps with ``outer.embedding_lr`` (else ``outer.lr``)."""

    name: str = "pefll"
    hnet_input: ClassVar[str] = "data"  # the hypernetwork reads each client's descriptor (hnet.input=data)


@dataclass
class DescribedRoundPlan(RoundPlan):
    """A PeFLL round: what was sent, the trainers' descriptors and the ψ they came from."""

    descriptors: dict[int, torch.Tensor] = field(default_factory=dict)  # cid -> v_i [d]
    psi: ArrayRecord = field(default_factory=ArrayRecord)


class PeFLL(PFedHN):
    """pFedHN whose hypernetwork input is each client's descriptor v_i, from the server's ψ."""

    adapts_novel_clients = False  # a new client describes itself and is sent h(v_i): nothing to fit

    def __init__(self, cfg: ExperimentConfig, directory: ClientDirectory, trainer: HyperNetTrainer) -> None:
        if trainer.hnet.conditioner.private:
            raise ValueError(f"PeFLL needs hnet.input=data, not hnet.input={cfg.hnet.input}")
        super().__init__(cfg, directory, trainer)
        input_shape, n_classes = dataset_info(cfg.data.name)
        with torch.random.fork_rng(devices=[]):  # ψ's own seeded draw; the global stream stays as it was
            torch.manual_seed(cfg.seed)
            psi = DescriptorNet(math.prod(input_shape), n_classes, trainer.hnet.conditioner.extra_dim)
        self.psi = psi.to(trainer.device)
        outer = cfg.strategy.outer
        self.psi_lr = outer.embedding_lr or outer.lr  # in round r, times outer.lr_factor as Φ's (outer.schedule)
        self.psi_optimizer = torch.optim.SGD(self.psi.parameters(), lr=self.psi_lr, momentum=outer.momentum)
        self.latest_descriptors: dict[int, torch.Tensor] = {}  # each client's last descriptor, for the figure

    # --- describe, then generate --------------------------------------------------------
    def configure_train(self, server_round: int, client_ids: list[int], calls: Exchange) -> DescribedRoundPlan:
        """Describe the sampled clients, then send each h(v_i); a client without a descriptor sits out."""
        psi = protocol.weights_to_record(self.psi.state_dict())
        descriptors = self.describe(client_ids, psi, calls)
        return DescribedRoundPlan(self._generated(descriptors), descriptors, psi)

    def configure_evaluate(self, server_round: int, client_ids: list[int], calls: Exchange) -> dict[int, ArrayRecord]:
        return self._generated(self.describe(client_ids, protocol.weights_to_record(self.psi.state_dict()), calls))

    def _generated(self, descriptors: dict[int, torch.Tensor]) -> dict[int, ArrayRecord]:
        """h(v_i) for each described client, cut to its width."""
        ids = sorted(descriptors)
        if not ids:
            return {}
        weights = self.trainer.generate(ids, torch.stack([descriptors[c] for c in ids]))
        return {cid: protocol.weights_to_record(w) for cid, w in self.widths.split(ids, weights).items()}

    def describe(self, client_ids: list[int], psi: ArrayRecord, calls: Exchange) -> dict[int, torch.Tensor]:
        """Each client's descriptor v_i [d] under ``psi``; a client without a valid one is left out."""
        expected = {protocol.DESCRIPTOR: torch.zeros(self.trainer.hnet.conditioner.extra_dim)}
        check = arrays_check(protocol.DESCRIPTOR, expected, "descriptor")
        valid = calls.ask(protocol.DESCRIPTOR_QUERY, {cid: {protocol.ARRAYS: psi} for cid in client_ids}, check)
        described = {cid: r.weights[protocol.DESCRIPTOR] for cid, r in valid.items()}
        self.latest_descriptors.update(described)
        return described

    # --- the outer step: Φ from the trained weights, then ψ from dL/dv_i --------------------
    def aggregate_train(
        self, server_round: int, plan: DescribedRoundPlan, replies: dict[int, Reply], calls: Exchange
    ) -> dict[str, float]:
        descriptors = torch.stack([plan.descriptors[c] for c in sorted(replies)]).requires_grad_(True)  # [B, d]
        ids, trained = self.trained_weights(replies, descriptors)
        counts = {c: replies[c].num_examples for c in ids}
        grad_norm = self.trainer.step(ids, trained, list(counts.values()), descriptors, server_round)
        psi = self.step_psi(ids, descriptors.grad, counts, plan.psi, calls, server_round)
        return {**train_summary(replies), record.GRAD_NORM: grad_norm, **psi}

    def step_psi(
        self,
        client_ids: list[int],
        grad_v: torch.Tensor,
        counts: dict[int, int],
        psi_sent: ArrayRecord,
        calls: Exchange,
        server_round: int | None = None,
    ) -> dict[str, float]:
        """Send each client ψ and its dL/dv_i [B, d]; step ψ along the weighted sum of their answers.

        In round ``server_round`` ψ steps at the share of its learning rate that Φ's schedule gives
        that round (``strategy.outer.schedule``); None steps at the rate it has.
        """
        contents = {
            cid: {
                protocol.ARRAYS: psi_sent,
                protocol.DESCRIPTOR_GRAD: protocol.weights_to_record({protocol.DESCRIPTOR_GRAD: grad_v[b]}),
            }
            for b, cid in enumerate(client_ids)
        }
        psi = dict(self.psi.named_parameters())
        check = arrays_check(protocol.ARRAYS, psi, "descriptor gradient")
        valid = calls.ask(protocol.DESCRIPTOR_GRAD_QUERY, contents, check)
        if not valid:
            return {"psi_clients": 0}
        answered = sorted(valid)
        weights = self.trainer.cfg.client_weights([counts[c] for c in answered])  # [B']
        for name, p in psi.items():
            p.grad = torch.tensordot(weights, torch.stack([valid[c].weights[name] for c in answered]), dims=1).to(p)
        norm = torch.nn.utils.clip_grad_norm_(self.psi.parameters(), self.trainer.cfg.grad_clip or float("inf"))
        if server_round is not None:
            self.trainer.schedule(self.psi_optimizer, [self.psi_lr], server_round)
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


register_server(PeFLLConfig, build)
