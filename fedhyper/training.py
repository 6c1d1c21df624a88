"""Local training and evaluation of a target network from weights it was sent.

Pure PyTorch, shared by the ClientApps and by the in-process reference loop that
benchmarks and tests compare the Flower simulation against.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fedhyper.models import apply

SCHEDULES = ("constant", "cosine")  # strategy.local.lr_schedule and strategy.outer.schedule


def schedule_factor(schedule: str, server_round: int, num_rounds: int) -> float:
    """The share of a learning rate that round ``server_round`` (from 1) of ``num_rounds`` uses.

    constant: 1 in every round; cosine: (1 + cos(π (r − 1) / R)) / 2 in round r of R, from 1 in round 1
    towards 0 in round R (Loshchilov and Hutter, SGDR, ICLR 2017, without restarts). Relative to the run's
    rounds, so a short tuning run decays as the long run it stands for does.
    """
    if schedule == "constant" or num_rounds <= 0:
        return 1.0
    done = min(max(server_round - 1, 0), num_rounds - 1) / num_rounds
    return 0.5 * (1.0 + math.cos(math.pi * done))


@dataclass
class LocalTrainConfig:
    """A client's inner loop; pFedHN's defaults."""

    steps: int = 50  # optimiser steps per round (batches drawn with replacement of epochs)
    lr: float = 5e-3  # SGD learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-5  # SGD weight decay
    batch_size: int = 64  # examples per step
    # The training rounds' lr: constant, or cosine (lr × (1 + cos(π (r − 1) / R)) / 2 in round r of R, as
    # strategy.outer.schedule; the novel clients' rounds over their own sim.novel_rounds, from lr again).
    # Only training decays: adaptation and fine-tuning before evaluation use lr.
    lr_schedule: str = "constant"
    # Each step's gradient over the trained tensors is scaled down to this L2 norm when longer (0: never),
    # so that one bad batch cannot throw a client's weights, and the private part it keeps, to huge values.
    max_grad_norm: float = 0.0

    def validate(self, prefix: str = "strategy.local") -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"{prefix}.steps={self.steps} and {prefix}.batch_size={self.batch_size} must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"{prefix}.lr={self.lr} must be positive")
        if self.max_grad_norm < 0:
            raise ValueError(f"{prefix}.max_grad_norm={self.max_grad_norm} must be >= 0 (0: no clipping)")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(
                f"{prefix}.lr_schedule={self.lr_schedule!r} is unknown; choose one of {', '.join(SCHEDULES)}"
            )


def batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """Yield ``steps`` index batches, walking shuffled epochs of ``n`` examples."""
    order = torch.randperm(n, generator=generator)
    pos = 0
    for _ in range(steps):
        if pos >= n:
            order, pos = torch.randperm(n, generator=generator), 0
        yield order[pos : pos + batch_size]
        pos += batch_size


def require_examples(y: torch.Tensor, steps: int) -> None:
    """A ValueError for steps to take without an example: a partition can leave a client nothing (Dirichlet,
    small alpha, many clients), which would train on NaN losses."""
    if len(y) == 0 and steps > 0:
        raise ValueError("no training example to train on: this client's partition left it none")


def train_local(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: LocalTrainConfig,
    generator: torch.Generator,
    *,
    trainable: Collection[str] | None = None,
    anchor: dict[str, torch.Tensor] | None = None,
    mu: float = 0.0,
    steps: int | None = None,
) -> tuple[dict[str, torch.Tensor], float]:
    """Train ``weights`` on (x, y) with SGD; return all of them and the mean loss.

    Parameters
    ----------
    trainable : the names to train; the others stay fixed (FedRep's alternating phases).
        None trains every tensor.
    anchor, mu : add (mu / 2) ||θ − anchor||² over the trained tensors that ``anchor`` holds
        (FedProx's proximal term, Ditto's pull towards the global model).
    steps : optimiser steps; None takes ``cfg.steps``.
    """
    steps = cfg.steps if steps is None else steps
    require_examples(y, steps)
    names = set(weights) if trainable is None else set(trainable)
    params = {n: w.detach().clone().requires_grad_(n in names) for n, w in weights.items()}
    trained = [p for n, p in params.items() if n in names]
    opt = torch.optim.SGD(trained, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    pulled = [(params[n], a.detach()) for n, a in (anchor or {}).items() if n in names] if mu else []
    total = torch.zeros((), device=y.device)  # on the data's device: a CPU sum of CUDA losses fails
    for idx in batches(len(y), cfg.batch_size, steps, generator):
        loss = nn.functional.cross_entropy(apply(model, params, x[idx]), y[idx])
        total += loss.detach()
        if pulled:
            loss = loss + mu / 2 * sum(((p - a) ** 2).sum() for p, a in pulled)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(trained, cfg.max_grad_norm)
        opt.step()
    return {name: p.detach() for name, p in params.items()}, float(total) / max(steps, 1)


def train_mutual(
    model: nn.Module,
    members: list[dict[str, torch.Tensor]],
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: LocalTrainConfig,
    generator: torch.Generator,
    steps: list[int],
    weight: float,
) -> tuple[list[dict[str, torch.Tensor]], float]:
    """Train several models of ``model``'s architecture side by side, each distilling from the others.

    Deep mutual learning (Zhang et al., CVPR 2018; in federated learning FML, Shen et al., 2020): on every
    batch member k takes an SGD step on its cross-entropy plus ``weight`` × the mean over the other members j
    of KL(p_j ‖ p_k), p_j their predicted probabilities held fixed. Member k trains ``steps[k]`` steps, all on
    the same batches; one that has taken its steps still teaches. With ``weight`` 0 each member ends exactly as
    ``train_local`` on those batches leaves it. Returns the members' weights and their mean cross-entropy.
    """
    require_examples(y, max(steps))
    params = [{n: w.detach().clone().requires_grad_(True) for n, w in m.items()} for m in members]
    opts = [
        torch.optim.SGD(list(p.values()), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        for p in params
    ]
    totals = [torch.zeros((), device=y.device) for _ in members]
    for step, idx in enumerate(batches(len(y), cfg.batch_size, max(steps), generator)):
        logits = []
        for p, k_steps in zip(params, steps, strict=True):
            with torch.set_grad_enabled(step < k_steps):  # a member done training only teaches
                logits.append(apply(model, p, x[idx]))
        held = [nn.functional.softmax(z.detach(), dim=1) for z in logits]
        for k, (p, opt) in enumerate(zip(params, opts, strict=True)):
            if step >= steps[k]:
                continue
            loss = nn.functional.cross_entropy(logits[k], y[idx])
            totals[k] += loss.detach()
            others = [held[j] for j in range(len(members)) if j != k]
            if weight > 0 and others:
                log_p = nn.functional.log_softmax(logits[k], dim=1)
                kl = sum(nn.functional.kl_div(log_p, q, reduction="batchmean") for q in others)
                loss = loss + weight * kl / len(others)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(list(p.values()), cfg.max_grad_norm)
            opt.step()
    mean_loss = sum(float(t) / max(s, 1) for t, s in zip(totals, steps, strict=True)) / len(members)
    return [{n: w.detach() for n, w in p.items()} for p in params], mean_loss


@torch.no_grad()
def evaluate(
    model: nn.Module, weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``weights`` on (x, y); (0, 0) when there is no example.

    An example whose logits or loss are not finite (a diverged model's: NaN, or outputs so large that
    the cross-entropy overflows) is a wrong prediction with the loss of a uniform guess, ln C: a broken
    model scores what it predicts, and its client's reply stays finite, so it counts in the mean over
    clients instead of being left out of it.
    """
    if len(y) == 0:
        return 0.0, 0.0
    loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        logits = apply(model, weights, x[start : start + batch_size])
        target = y[start : start + batch_size]
        batch_loss = float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        if math.isfinite(batch_loss):
            loss += batch_loss
            correct += int((logits.argmax(1) == target).sum())
            continue
        each = torch.zeros(len(target), dtype=torch.float64, device=target.device)
        finite = torch.isfinite(logits).all(1)
        each[finite] = nn.functional.cross_entropy(logits[finite], target[finite], reduction="none").double()
        broken = ~finite | ~torch.isfinite(each)
        each[broken] = math.log(logits.shape[1])  # a uniform guess's loss
        loss += float(each.sum())
        correct += int(((logits.argmax(1) == target) & ~broken).sum())
    return loss / len(y), correct / len(y)


@torch.no_grad()
def evaluate_ensemble(
    model: nn.Module,
    members: list[dict[str, torch.Tensor]],
    x: torch.Tensor,
    y: torch.Tensor,
    mixture: Sequence[float] | None = None,
) -> dict[str, float]:
    """An ensemble's accuracy (of the averaged prediction) and its predictive uncertainty on (x, y).

    The averaged prediction is p̄ = Σ_k w_k p_k with the members' weights ``mixture`` (summing to 1;
    None: equal). Returns loss, accuracy, the members' mean accuracy, the predictive entropy H[p̄]
    (mean over examples), the mutual information H[p̄] − Σ_k w_k H[p_k] (how much the members
    disagree) and the predictive entropy on correctly and wrongly classified examples.

    A member whose logits for an example are not finite (a diverged member's) predicts nothing
    there: it contributes the uniform distribution to p̄ and a wrong prediction to the members'
    accuracy, and an example that every member failed on is a wrong prediction, as in
    :func:`evaluate`. The metrics stay finite, so such a client's reply counts in the means.
    """
    if len(y) == 0:
        return dict.fromkeys(("loss", "accuracy", "member_accuracy", "entropy", "mutual_information",
                              "entropy_correct", "entropy_wrong"), 0.0)  # fmt: skip
    logits = torch.stack([apply(model, w, x) for w in members])  # [K, N, C]
    broken = ~torch.isfinite(logits).all(2)  # [K, N]
    probs = torch.softmax(logits.masked_fill(broken.unsqueeze(2), 0.0), dim=2)  # a broken row is uniform
    each_entropy = -(probs * probs.clamp_min(1e-12).log()).sum(2)  # [K, N]
    if mixture is None:  # the plain mean, as before weights existed (the same bits)
        mean, member_entropy = probs.mean(0), each_entropy.mean(0)  # [N, C], [N]
    else:
        w = torch.tensor(list(mixture), dtype=probs.dtype, device=probs.device)
        if len(w) != len(members) or (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(f"mixture {list(mixture)}: one weight >= 0 per member ({len(members)}), summing to 1")
        mean, member_entropy = torch.einsum("k,knc->nc", w, probs), torch.einsum("k,kn->n", w, each_entropy)
    entropy = -(mean * mean.clamp_min(1e-12).log()).sum(1)  # [N]
    correct = (mean.argmax(1) == y) & ~broken.all(0)
    return {
        "loss": float(nn.functional.nll_loss(mean.clamp_min(1e-12).log(), y)),
        "accuracy": float(correct.float().mean()),
        "member_accuracy": float(((probs.argmax(2) == y) & ~broken).float().mean()),
        "entropy": float(entropy.mean()),
        "mutual_information": float((entropy - member_entropy).mean()),
        "entropy_correct": float(entropy[correct].mean()) if correct.any() else 0.0,
        "entropy_wrong": float(entropy[~correct].mean()) if (~correct).any() else 0.0,
    }
