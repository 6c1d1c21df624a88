"""Parameter counts of every hypernetwork design on a target model, as a Markdown table.

    python -m scripts.hnet_sizes [--clients 100] [--model cnn]
"""

from __future__ import annotations

import argparse
import itertools

from fedhyper.data import dataset_info
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
    print("| input | output | body | Φ (shared) | client table | Φ / target |")
    print("|---|---|---|---|---|---|")
    for inp, out, body in itertools.product(INPUTS, OUTPUTS, BODIES):
        counts = HyperNetwork(shapes, args.clients, HyperNetConfig(input=inp, output=out, body=body)).num_parameters()
        print(
            f"| `{inp}` | `{out}` | `{body}` | {counts['hnet_shared']:,} | {counts['hnet_embeddings']:,} "
            f"| {counts['hnet_shared'] / counts['target']:.1f} |"
        )


if __name__ == "__main__":
    main()
