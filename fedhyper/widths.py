"""Target models of several widths from one hypernetwork (pFedHN, section 5.4: output variability).

Shamsian, Navon, Fetaya, Chechik. "Personalized Federated Learning using Hypernetworks".
ICML 2021. https://arxiv.org/abs/2103.04628

The hypernetwork always generates the full-width model; a client of width w < 1 runs the
leading slice of every tensor (the first channels, units and inputs; ``fedhyper.models``
builds its model so that the shapes match). On the way back, a reply is embedded into the
full-width tensors it was cut from, with this round's generated weights outside its slice:
Δ_i = θ_i − θ̃_i is then exactly zero there, and the vector-Jacobian product of Δ_i through
the hypernetwork is that of the narrow model alone — outputs a client never used get no
gradient from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fedhyper.models import ModelConfig, build_model, client_width, target_shapes

Slices = dict[str, tuple[slice, ...]]


def slices(full_shapes: Mapping[str, Sequence[int]], small_shapes: Mapping[str, Sequence[int]]) -> Slices:
    """For every tensor of ``full_shapes``, the leading slice that holds its ``small_shapes`` counterpart."""
    out: Slices = {}
    for name, full in full_shapes.items():
        if name not in small_shapes:
            raise ValueError(f"the narrow model has no tensor {name}")
        small = tuple(small_shapes[name])
        if len(small) != len(full) or any(s > f for s, f in zip(small, full, strict=True)):
            raise ValueError(f"{name}: shape {list(small)} is not a leading slice of {list(full)}")
        out[name] = tuple(slice(0, s) for s in small)
    return out


def shrink(weights: Mapping[str, torch.Tensor], cut: Slices) -> dict[str, torch.Tensor]:
    """One client's narrow weights: the leading slice ``cut`` of each full-width tensor."""
    return {name: weights[name][cut[name]] for name in cut}


def embed(
    small: Mapping[str, torch.Tensor], full_template: Mapping[str, torch.Tensor], cut: Slices
) -> dict[str, torch.Tensor]:
    """Full-width tensors equal to ``small`` inside ``cut`` and to ``full_template`` outside it."""
    out = {}
    for name, template in full_template.items():
        out[name] = template.clone()
        out[name][cut[name]] = small[name].to(template.device, template.dtype)
    return out


class ClientWidths:
    """Each client's slice of the full-width tensors a hypernetwork generates.

    Parameters
    ----------
    cfg : the target model, with its ``width_multipliers``.
    input_shape, n_classes : the dataset's.
    full_shapes : the tensors the hypernetwork generates (name -> shape at width 1.0); any
        other tensor of the model (pFedHN-PC's head) stays on the client at its width.
    """

    def __init__(
        self, cfg: ModelConfig, input_shape: tuple[int, int, int], n_classes: int, full_shapes: Mapping
    ) -> None:
        self.cfg = cfg
        self.cuts: dict[float, Slices] = {}
        for width in set(cfg.width_multipliers) - {1.0}:
            narrow = target_shapes(build_model(cfg, input_shape, n_classes, width))
            self.cuts[width] = slices(full_shapes, {n: narrow[n] for n in full_shapes if n in narrow})

    @property
    def varied(self) -> bool:
        """Whether any client runs a model narrower than the generated one."""
        return bool(self.cuts)

    def cut(self, cid: int) -> Slices | None:
        """Client ``cid``'s slices, or None at full width."""
        return self.cuts.get(client_width(self.cfg, cid))

    def split(self, client_ids: list[int], batched: Mapping[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
        """Each client's weights at its width from full-width ones batched in ``client_ids`` order."""
        out = {}
        for b, cid in enumerate(client_ids):
            row = {name: w[b] for name, w in batched.items()}
            cut = self.cut(cid)
            out[cid] = row if cut is None else shrink(row, cut)
        return out

    def join(
        self, client_ids: list[int], trained: Mapping[int, Mapping[str, torch.Tensor]], generated: Mapping
    ) -> dict[str, torch.Tensor]:
        """Full-width trained weights batched in ``client_ids`` order: name -> [B, *shape].

        ``generated`` (name -> [B, *shape], same order) fills each tensor outside the client's
        slice; it must be what the hypernetwork generates for these clients now, so that Δ_i is
        zero there.
        """
        rows = []
        for b, cid in enumerate(client_ids):
            template = {name: w[b] for name, w in generated.items()}
            cut = self.cut(cid)
            rows.append({n: trained[cid][n] for n in template} if cut is None else embed(trained[cid], template, cut))
        return {name: torch.stack([r[name].to(generated[name].device) for r in rows]) for name in generated}
