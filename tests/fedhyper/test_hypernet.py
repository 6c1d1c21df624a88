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

    assert hnet.embeddings.embedding_dim == 13  # 1 + 50 / 4
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
