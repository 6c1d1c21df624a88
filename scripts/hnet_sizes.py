"""Parameter counts of every hypernetwork design on a target model, as a Markdown table.

python -m scripts.hnet_sizes [--clients 100] [--model cnn]

Every registered input × output × body (``fedhyper.hnet.config``), with the default init.
"""

from __future__ import annotations

import argparse
import itertools

from fedhyper.data import dataset_info
from fedhyper.descriptor import DescriptorNet
from fedhyper.hnet.config import BODIES, INPUTS, OUTPUTS
from fedhyper.hypernet import HyperNetConfig, HyperNetwork
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
        hnet = HyperNetwork(shapes, args.clients, HyperNetConfig(input=inp, output=out, body=body))
        counts = hnet.num_parameters()
        if hnet.conditioner.private:
            per_client = f"table: {counts['hnet_embeddings']:,}"
        else:  # the descriptor network ψ, which the server owns and the clients run
            psi = DescriptorNet(channels * height * width, n_classes, hnet.conditioner.extra_dim)
            per_client = f"ψ: {sum(p.numel() for p in psi.parameters()):,}"
        print(
            f"| `{inp}` | `{out}` | `{body}` | {counts['hnet_shared']:,} | {per_client} "
            f"| {counts['hnet_shared'] / counts['target']:.1f} |"
        )


if __name__ == "__main__":
    main()
