"""The hypernetwork's gradient from its clients' local updates.

A client starts from generated weights θ̃_i = h(v_i; Φ), trains locally to θ_i and sends
back Δ_i = θ_i − θ̃_i. pFedHN's update is the vector-Jacobian product
∇Φ = Σ_i w_i (∂θ̃_i/∂Φ)ᵀ (−Δ_i): a step against it moves each generated model towards
its locally trained one. One ``torch.autograd.grad`` call with ``grad_outputs`` computes
it for all clients of a round at once.
"""

from __future__ import annotations

import torch

AGGREGATES = ("sum", "mean")


def example_weights(num_examples: list[int] | torch.Tensor, aggregate: str = "mean") -> torch.Tensor:
    """Client weights from example counts: w_i = n_i / Σn ("mean"), or K · n_i / Σn ("sum").

    "sum" makes each client's update count as one pFedHN step (weights average 1), so that
    K clients a round move Φ about as far as K one-client steps from the same Φ would.
    """
    n = torch.as_tensor(num_examples, dtype=torch.float32)
    if (n <= 0).any():
        raise ValueError(f"every client must report a positive example count, got {n.tolist()}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate={aggregate!r} is unknown; choose one of {', '.join(AGGREGATES)}")
    w = n / n.sum()
    return w * len(n) if aggregate == "sum" else w


def hypernet_gradients(
    generated: dict[str, torch.Tensor],
    deltas: dict[str, torch.Tensor],
    weights: torch.Tensor,
    shared: list[torch.Tensor],
    embeddings: torch.Tensor,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Gradients of the shared parameters and of each client's embedding row.

    Parameters
    ----------
    generated : name -> [B, *shape], the hypernet's output for the round's B clients.
    deltas : name -> [B, *shape], Δ_i = θ_i − θ̃_i, in the same order.
    weights : [B], the weight of each client in the shared gradient (``example_weights``).
    shared : the shared parameters Φ that ``generated`` depends on.
    embeddings : [B, emb_dim], the embedding rows fed to the hypernet (part of the graph).

    Returns
    -------
    The example-weighted gradient for each tensor of ``shared``, and [B, emb_dim]
    embedding gradients, each client's own and not scaled by ``weights``: an embedding
    belongs to one client, so sampling more clients a round must not slow its learning.
    """
    names = list(generated)
    outputs = [generated[n] for n in names]
    scale = weights.to(outputs[0].dtype)
    grad_outputs = [-deltas[n] * scale.view(-1, *([1] * (deltas[n].dim() - 1))) for n in names]
    grads = torch.autograd.grad(outputs, [*shared, embeddings], grad_outputs=grad_outputs, allow_unused=True)
    shared_grads = [torch.zeros_like(p) if g is None else g for p, g in zip(shared, grads[:-1], strict=True)]
    return shared_grads, grads[-1] / scale.unsqueeze(1)


class _Generator(torch.nn.Module):
    """``hnet.generate`` as a module's forward, so that ``torch.func.functional_call`` can swap its parameters."""

    def __init__(self, hnet: torch.nn.Module) -> None:
        super().__init__()
        self.hnet = hnet

    def forward(self, condition: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.hnet.generate(condition)


def per_client_gradients(
    hnet: torch.nn.Module,
    shared: list[torch.Tensor],
    condition: torch.Tensor,
    cotangents: dict[str, torch.Tensor],
    chunk_size: int | None = 32,
) -> list[torch.Tensor]:
    """Each client's own gradient of ``shared``: one VJP per client, vectorised over the batch.

    Parameters
    ----------
    hnet : the hypernetwork (``generate(condition) -> name -> [B, *shape]``).
    shared : the parameters Φ whose per-client gradients are wanted.
    condition : [B, dim], each client's input to the body (treated as a constant).
    cotangents : name -> [B, *shape], each client's ``grad_outputs`` (−w_i Δ_i).
    chunk_size : clients vectorised at once; bounds memory at ``chunk_size`` copies of Φ's gradient.

    Returns
    -------
    For each tensor of ``shared``, [B, *shape]: row i is (∂θ̃_i/∂Φ)ᵀ cotangent_i, whose sum over
    rows is ``hypernet_gradients``' shared gradient.
    """
    module = _Generator(hnet)
    name_of = {id(p): n for n, p in module.named_parameters()}
    names = [name_of[id(p)] for p in shared]
    params = {n: p.detach() for n, p in zip(names, shared, strict=True)}

    def one(cond: torch.Tensor, cot: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        def generate(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return torch.func.functional_call(module, p, (cond.unsqueeze(0),), strict=False)

        _, pull = torch.func.vjp(generate, params)
        (grads,) = pull({n: c.unsqueeze(0) for n, c in cot.items()})
        return tuple(grads[n] for n in names)

    return list(torch.func.vmap(one, chunk_size=chunk_size)(condition.detach(), cotangents))


def flat_norms(per_client: list[torch.Tensor]) -> torch.Tensor:
    """[B] L2 norms of each client's gradient over all tensors (rows of ``per_client_gradients``)."""
    return torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in per_client))
