import pytest
import torch

from fedhyper.aggregate import select, weighted_mean, without
from fedhyper.layerwise import LayerwiseHyperNets, layer_index, personalise
from fedhyper.models import CNNTarget, ModelConfig, head_names, initial_weights
from fedhyper.training import LocalTrainConfig, train_local


def test_weighted_mean_weights_each_model_by_its_example_count():
    a, b = {"w": torch.tensor([0.0, 4.0])}, {"w": torch.tensor([4.0, 0.0])}

    mean = weighted_mean([a, b], [1, 3])

    torch.testing.assert_close(mean["w"], torch.tensor([3.0, 1.0]))


def test_weighted_mean_refuses_non_positive_counts():
    with pytest.raises(ValueError, match="positive"):
        weighted_mean([{"w": torch.zeros(1)}], [0])


def test_the_head_is_the_last_linear_layer_and_the_body_the_rest():
    model = CNNTarget()
    weights = dict(model.named_parameters())

    head = head_names(model)

    assert head == ["fc3.weight", "fc3.bias"]
    assert list(select(weights, head)) == head
    assert "fc3.weight" not in without(weights, head) and len(without(weights, head)) == len(weights) - 2


def test_initial_weights_depend_on_the_seed_only():
    cfg = ModelConfig()
    first, again = (initial_weights(cfg, (1, 28, 28), 10, seed=3) for _ in range(2))
    other = initial_weights(cfg, (1, 28, 28), 10, seed=4)

    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not torch.equal(first["fc1.weight"], other["fc1.weight"])


def test_frozen_tensors_do_not_move_and_a_proximal_term_holds_weights_near_the_anchor():
    model = CNNTarget()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    cfg = LocalTrainConfig(steps=20, lr=0.1, momentum=0.0)

    def gen():
        return torch.Generator().manual_seed(0)

    head_only, _ = train_local(model, weights, x, y, cfg, gen(), trainable=["fc3.weight", "fc3.bias"])
    free, _ = train_local(model, weights, x, y, cfg, gen())
    pulled, _ = train_local(model, weights, x, y, cfg, gen(), anchor=weights, mu=10.0)

    assert torch.equal(head_only["fc1.weight"], weights["fc1.weight"])
    assert not torch.equal(head_only["fc3.weight"], weights["fc3.weight"])

    def distance(w):
        return sum(float(((w[n] - weights[n]) ** 2).sum()) for n in w)

    assert 0 < distance(pulled) < distance(free)


def test_layerwise_hypernets_start_by_averaging_all_models_and_personalise_per_layer():
    names = ["conv.weight", "conv.bias", "fc.weight"]
    models = {n: torch.randn(3, 2, 2) for n in names}  # [N=3 clients, 2, 2]
    hnets = LayerwiseHyperNets(num_clients=3, num_layers=2, embedding_dim=4, hidden_dim=5)

    alpha = hnets(torch.tensor([0, 2]))  # [2, L, N]
    mixed = personalise(alpha, models, layer_index(names))

    assert layer_index(names) == {"conv.weight": 0, "conv.bias": 0, "fc.weight": 1}
    torch.testing.assert_close(alpha, torch.full((2, 2, 3), 1 / 3))
    torch.testing.assert_close(mixed["fc.weight"][1], models["fc.weight"].mean(0))
    one_hot = torch.zeros(1, 2, 3)
    one_hot[0, 0, 1], one_hot[0, 1, 2] = 1.0, 1.0
    picked = personalise(one_hot, models, layer_index(names))
    torch.testing.assert_close(picked["conv.bias"][0], models["conv.bias"][1])
    torch.testing.assert_close(picked["fc.weight"][0], models["fc.weight"][2])
