"""pFedHN-PC: pFedHN with personal classifiers. The hypernetwork generates each client's
feature extractor; each client's classifier head is trained and kept on the client alone.

Shamsian, Navon, Fetaya, Chechik. "Personalized Federated Learning using Hypernetworks".
ICML 2021, section 4 ("pFedHN-PC"). https://arxiv.org/abs/2103.04628

The head never crosses the wire: the server's hypernetwork has no output for it, so the
client routine keeps it in the node's state (``clients/personal.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedhyper.algorithms import register_server
from fedhyper.config import ExperimentConfig
from fedhyper.data import dataset_info
from fedhyper.models import build_model, head_names
from strategies import pefll
from strategies.directory import ClientDirectory
from strategies.pfedhn import PFedHN, PFedHNConfig, build_trainer


@dataclass
class PFedHNPCConfig(PFedHNConfig):
    name: str = "pfedhn_pc"


class PFedHNPC(PFedHN):
    """pFedHN over the body's tensors; Δ_i covers the body only."""


def build(cfg: ExperimentConfig, directory: ClientDirectory) -> PFedHN:
    input_shape, n_classes = dataset_info(cfg.data.name)
    head = tuple(head_names(build_model(cfg.model, input_shape, n_classes)))
    if cfg.hnet.input == "data":  # PeFLL's hypernetwork over the body
        return pefll.build(cfg, directory, exclude=head)
    return PFedHNPC(cfg, directory, build_trainer(cfg, exclude=head))


register_server(PFedHNPCConfig, build)
