import pytest
import torch

from fedhyper.hypernet import HyperNetConfig, HyperNetwork
from fedhyper.models import ModelConfig, apply, build_model, target_shapes


@pytest.mark.parametrize(("name", "shape"), [("cnn", (1, 28, 28)), ("cnn", (3, 32, 32)), ("mlp", (1, 28, 28))])
def test_one_forward_generates_every_target_tensor_for_every_client(name, shape):
    model = build_model(ModelConfig(name=name), shape, 10)
    hnet = HyperNetwork(target_shapes(model), num_clients=7, cfg=HyperNetConfig())

    weights = hnet(torch.tensor([0, 3, 6]))

    assert list(weights) == list(target_shapes(model))
    for n, s in target_shapes(model).items():
        assert weights[n].shape == (3, *s)
    logits = apply(model, {n: w[1] for n, w in weights.items()}, torch.randn(2, *shape))
    assert logits.shape == (2, 10)


def test_batched_forward_equals_one_client_at_a_time():
    model = build_model(ModelConfig(name="mlp", hidden=8), (1, 4, 4), 3)
    hnet = HyperNetwork(target_shapes(model), num_clients=5, cfg=HyperNetConfig(hidden_dim=16))

    batched = hnet(torch.tensor([1, 4]))
    single = hnet(torch.tensor([4]))

    for n in batched:
        torch.testing.assert_close(batched[n][1], single[n][0])
    assert not torch.allclose(batched["fc1.weight"][0], batched["fc1.weight"][1])


def test_embedding_dim_follows_pfedhn_rule_and_parameters_split():
    model = build_model(ModelConfig(name="mlp", hidden=8), (1, 4, 4), 3)
    hnet = HyperNetwork(target_shapes(model), num_clients=50, cfg=HyperNetConfig())

    assert hnet.conditioner.table.embedding_dim == 13  # 1 + 50 / 4
    shared = {id(p) for p in hnet.shared_parameters()}
    emb = {id(p) for p in hnet.embedding_parameters()}
    assert shared.isdisjoint(emb)
    assert len(shared) + len(emb) == len(list(hnet.parameters()))


def test_max_embedding_dim_caps_the_pfedhn_rule():
    assert HyperNetConfig(max_embedding_dim=None).resolved_embedding_dim(10_000) == 2501
    assert HyperNetConfig().resolved_embedding_dim(10_000) == 64  # the default cap
    assert HyperNetConfig().resolved_embedding_dim(100) == 26  # below it: pFedHN's rule
    assert HyperNetConfig(max_embedding_dim=32).resolved_embedding_dim(10_000) == 32
    assert HyperNetConfig(max_embedding_dim=32).resolved_embedding_dim(50) == 13
    assert HyperNetConfig(embedding_dim=8).resolved_embedding_dim(10_000) == 8


def frozen_pfedhn(shapes: dict[str, torch.Size], num_clients: int, cfg: HyperNetConfig, seed: int):
    """pFedHN's default hypernetwork as the code stood before issue 16, written out with plain torch layers.

    The same draws in the same order: the embedding table, the MLP body's layers, one head per tensor.
    """
    torch.manual_seed(seed)
    table = torch.nn.Embedding(num_clients, cfg.resolved_embedding_dim(num_clients))
    layers: list[torch.nn.Module] = [torch.nn.Linear(table.embedding_dim, cfg.hidden_dim)]
    for _ in range(cfg.n_hidden):
        layers += [torch.nn.ReLU(), torch.nn.Linear(cfg.hidden_dim, cfg.hidden_dim)]
    mlp = torch.nn.Sequential(*layers)
    heads = [torch.nn.Linear(cfg.hidden_dim, s.numel()) for s in shapes.values()]

    def generate(ids: torch.Tensor) -> dict[str, torch.Tensor]:
        features = mlp(table(ids))  # [B, hidden]
        return {n: head(features).view(len(ids), *s) for (n, s), head in zip(shapes.items(), heads, strict=True)}

    return generate, [table.weight, *mlp.parameters(), *(p for h in heads for p in h.parameters())]


@pytest.mark.parametrize(("name", "shape", "classes"), [("mlp", (1, 4, 4), 3), ("cnn", (1, 28, 28), 10)])
def test_default_design_generates_bit_for_bit_what_the_pre_refactor_code_did(name, shape, classes):
    shapes = target_shapes(build_model(ModelConfig(name=name, hidden=8), shape, classes))
    cfg = HyperNetConfig(hidden_dim=16, n_hidden=2)
    reference, reference_params = frozen_pfedhn(shapes, 7, cfg, seed=5)
    torch.manual_seed(5)
    hnet = HyperNetwork(shapes, 7, cfg)
    ids = torch.tensor([0, 3, 6])

    weights, expected = hnet(ids), reference(ids)

    assert list(weights) == list(expected)
    for n in expected:
        assert torch.equal(weights[n], expected[n]), n
    params = list(hnet.parameters())
    assert len(params) == len(reference_params)
    assert all(torch.equal(p, q) for p, q in zip(params, reference_params, strict=True))


# Sums of squares of every generated tensor, for a tiny default design after one outer step,
# computed with the code as it stood before issue 16's refactor (commit ae49e87), whose steps weighed
# clients by example count: the trainer's step must move Φ and the table exactly as it did.
STEPPED_SQUARES = {
    "fc1.weight": 13.46517942768092,
    "fc1.bias": 0.5839701622111652,
    "fc2.weight": 6.292259676265721,
    "fc2.bias": 1.2409829032127893,
    "fc3.weight": 2.0838167778876766,
    "fc3.bias": 0.5967520042931558,
}


def test_default_design_after_one_outer_step_matches_the_pre_refactor_numbers():
    from fedhyper.outer import HyperNetTrainer, OuterConfig

    shapes = target_shapes(build_model(ModelConfig(name="mlp", hidden=8), (1, 4, 4), 3))
    torch.manual_seed(5)
    trainer = HyperNetTrainer(
        HyperNetwork(shapes, 7, HyperNetConfig(hidden_dim=16, n_hidden=2)), OuterConfig(weighting="examples")
    )
    ids = [0, 3, 6]
    generated = trainer.generate(ids)

    trainer.step(ids, {n: w + 0.01 for n, w in generated.items()}, [3, 5, 7])

    stepped = {n: float(w.double().square().sum()) for n, w in trainer.generate(ids).items()}
    assert stepped == pytest.approx(STEPPED_SQUARES, rel=1e-6)
