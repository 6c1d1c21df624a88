"""embeddings.png: the 2-D projection of what the server knows each client by, drawn after the run."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from fedhyper import record
from fedhyper.data import DataConfig, load_federated
from fedhyper.embedding_plot import plot_embeddings
from strategies.base import PersonalizedStrategy
from strategies.exchange import RoundMetrics

log = logging.getLogger("fedhyper")


class EmbeddingFigure:
    """After the run, plots the strategy's client vectors (pFedHN's embeddings, PeFLL's descriptors).

    Points are coloured by each client's dominant classes when the server can read the partition
    (a simulation of up to ``label_colour_limit`` clients); otherwise plain. Strategies without
    client vectors draw nothing.
    """

    label_colour_limit = 1000  # clients: above this the server would load the data only to colour points

    def __init__(
        self, strategy: PersonalizedStrategy, novel_ids: list[int], run_dir: Path, data: DataConfig, seed: int
    ) -> None:
        self.strategy, self.novel_ids, self.run_dir, self.data, self.seed = strategy, novel_ids, run_dir, data, seed

    def after_round(self, server_round: int, metrics: RoundMetrics) -> None:
        pass

    def after_run(self) -> None:
        vectors = self.strategy.client_vectors()
        if not vectors:
            return
        ids = sorted(vectors)
        counts = None
        if len(self.strategy.directory) <= self.label_colour_limit:
            try:
                counts = load_federated(self.data, self.seed).label_counts()[ids]
            except (OSError, ValueError) as err:  # a deployment's server may not have the data
                log.info("%s uncoloured: the server cannot read the partition (%s)", record.EMBEDDINGS_FILE, err)
        novel = [ids.index(c) for c in self.novel_ids if c in vectors]
        title = f"{type(self.strategy).__name__}: what the hypernetwork knows each client by"
        stacked = torch.stack([vectors[c] for c in ids])
        plot_embeddings(stacked, self.run_dir / record.EMBEDDINGS_FILE, counts, novel, title)
