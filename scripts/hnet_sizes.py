"""Parameter counts of every hypernetwork design on a target model, as a Markdown table.

python -m scripts.hnet_sizes [--clients 100] [--model cnn]
"""

from __future__ import annotations

import argparse
import itertools

from fedhyper.data import dataset_info
from fedhyper.descriptor import DescriptorNet
from fedhyper.hnet_layers import BODIES, OUTPUTS
from fedhyper.hypernet import INPUTS, HyperNetConfig, HyperNetwork
from fedhyper.models import ModelConfig, build_model, target_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--dataset", default="fmnist")
    args = parser.parse_args()
    target = build_model(ModelConfig(name=args.model), *dataset_info(args.dataset))
    shapes = target_shapes(target)
    print(f"target: {args.model}, {sum(p.numel() for p in target.parameters()):,} weights; {args.clients} clients\n")
    (channels, height, width), n_classes = dataset_info(args.dataset)
    print("| input | output | body | Φ (shared) | per-client part | Φ / target |")
    print("|---|---|---|---|---|---|")
    for inp, out, body in itertools.product(INPUTS, OUTPUTS, BODIES):
        cfg = HyperNetConfig(input=inp, output=out, body=body)
        counts = HyperNetwork(shapes, args.clients, cfg).num_parameters()
        if inp == "data":  # no table: the descriptor network ψ, which the server owns and the clients run
            psi = DescriptorNet(channels * height * width, n_classes, cfg.resolved_embedding_dim(args.clients))
            per_client = f"ψ: {sum(p.numel() for p in psi.parameters()):,}"
        else:
            per_client = f"table: {counts['hnet_embeddings']:,}"
        print(
            f"| `{inp}` | `{out}` | `{body}` | {counts['hnet_shared']:,} | {per_client} "
            f"| {counts['hnet_shared'] / counts['target']:.1f} |"
        )


if __name__ == "__main__":
    main()
