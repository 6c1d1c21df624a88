"""The hypernetwork's design choices: inputs, outputs, bodies, initialisation, stability."""

import itertools

import pytest
import torch

from fedhyper.hnet.config import BODIES, INPUTS, OUTPUTS
from fedhyper.hnet.inits import target_variances
from fedhyper.hypernet import HyperNetConfig, HyperNetwork
from fedhyper.models import ModelConfig, apply, build_model, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig

CNN = build_model(ModelConfig(name="cnn"), (1, 28, 28), 10)
SMALL = build_model(ModelConfig(name="mlp", hidden=8), (1, 4, 4), 3)


def hnet_for(model, num_clients=6, **options) -> HyperNetwork:
    torch.manual_seed(0)
    cfg = HyperNetConfig(**{"hidden_dim": 16, "n_hidden": 1, "chunk_size": 64, **options})
    return HyperNetwork(target_shapes(model), num_clients, cfg)


def condition(hnet: HyperNetwork, ids: list[int]) -> torch.Tensor:
    """The conditions of clients ``ids``, with a random per-call input (noise, descriptors) where one is needed."""
    extra_dim = hnet.conditioner.extra_dim
    return hnet.conditioner(torch.tensor(ids), torch.randn(len(ids), extra_dim) if extra_dim else None)


@pytest.mark.parametrize(("inp", "out", "body"), list(itertools.product(INPUTS, OUTPUTS, BODIES)))
def test_every_design_generates_a_working_target_for_each_client(inp, out, body):
    hnet = hnet_for(SMALL, input=inp, output=out, body=body, attention_heads=2)

    weights = hnet.generate(condition(hnet, [0, 2, 5]))

    assert {n: w.shape[1:] for n, w in weights.items()} == target_shapes(SMALL)
    assert all(w.shape[0] == 3 for w in weights.values())
    assert not torch.allclose(weights["fc1.weight"][0], weights["fc1.weight"][1])  # personalised
    assert apply(SMALL, {n: w[2] for n, w in weights.items()}, torch.randn(4, 1, 4, 4)).shape == (4, 3)
    loss = sum(w.square().sum() for w in weights.values())
    loss.backward()  # every part of the hypernetwork is in the graph
    assert all(p.grad is not None for p in hnet.shared_parameters())


def test_chunked_size_follows_the_chunk_not_the_target():
    counts = {
        out: hnet_for(CNN, output=out, hidden_dim=100, n_hidden=3, chunk_size=4096).num_parameters()
        for out in ("per_tensor", "chunked")
    }
    target = counts["per_tensor"]["target"]
    assert target == sum(p.numel() for p in CNN.parameters())
    assert counts["per_tensor"]["hnet_shared"] > 90 * target  # pFedHN's heads: ~100 x the target
    assert counts["chunked"]["hnet_shared"] < 10 * target
    wider = build_model(ModelConfig(name="cnn", n_kernels=32), (1, 28, 28), 10)
    chunked_wide = hnet_for(wider, output="chunked", hidden_dim=100, n_hidden=3, chunk_size=4096).num_parameters()
    # Doubling the target adds only chunk embeddings (8 numbers a chunk), no generator weights.
    growth = chunked_wide["hnet_shared"] - counts["chunked"]["hnet_shared"]
    assert growth < 0.01 * (chunked_wide["target"] - target)


def test_default_init_is_kept_bit_for_bit_from_pfedhn():
    """input=embedding, output=per_tensor, body=mlp draws the same numbers as pFedHN's layout always did."""
    torch.manual_seed(3)
    hnet = HyperNetwork(target_shapes(SMALL), 5, HyperNetConfig(hidden_dim=16))
    torch.manual_seed(3)
    emb = torch.nn.Embedding(5, hnet.conditioner.table.embedding_dim)
    first = torch.nn.Linear(emb.embedding_dim, 16)
    torch.testing.assert_close(hnet.conditioner.table.weight, emb.weight)
    torch.testing.assert_close(hnet.body.mlp[0].weight, first.weight)


def _generated_variance(hnet: HyperNetwork, name: str, clients: int = 64) -> float:
    with torch.no_grad():
        return float(hnet(torch.arange(clients))[name].var())


@pytest.mark.parametrize("fan", ["in", "out"])
def test_hyperfan_generates_weights_with_the_standard_initialisation_variance(fan):
    hnet = hnet_for(CNN, num_clients=64, init=f"hyperfan_{fan}", hidden_dim=100, n_hidden=3)
    for name, shape in target_shapes(CNN).items():
        if len(shape) < 2:
            continue
        wanted = 1 / (3 * (shape[1] if fan == "in" else shape[0]) * shape[2:].numel())
        got = _generated_variance(hnet, name)
        assert got == pytest.approx(wanted, rel=0.25), name


def test_hyperfan_in_matches_what_pytorch_gives_the_target_and_default_does_not():
    # The target network's own standard initialisation, measured over seeds.
    models = [dict(build_model(ModelConfig(), (1, 28, 28), 10).named_parameters()) for _ in range(8)]
    standard = {n: torch.stack([m[n].detach() for m in models]).var().item() for n in target_shapes(CNN)}
    fan_in = hnet_for(CNN, num_clients=64, init="hyperfan_in", hidden_dim=100, n_hidden=3)
    default = hnet_for(CNN, num_clients=64, hidden_dim=100, n_hidden=3)

    ratios_in = {n: _generated_variance(fan_in, n) / standard[n] for n in standard}
    ratios_default = {n: _generated_variance(default, n) / standard[n] for n in standard}

    weights = [n for n in standard if n.endswith("weight")]
    assert all(0.8 < ratios_in[n] < 1.25 for n in weights), ratios_in
    assert all(0.5 < r < 2 for r in ratios_in.values()), ratios_in  # biases: 10-32 numbers, noisy
    # PyTorch's default gives every target tensor the same scale: off by 10x or more somewhere.
    assert max(ratios_default.values()) / min(ratios_default.values()) > 10, ratios_default


@pytest.mark.parametrize("out", list(OUTPUTS))
def test_base_init_sends_every_client_the_base_drawn_as_pytorch_draws_the_target(out):
    hnet = hnet_for(CNN, num_clients=8, init="base", base=True, output=out, hidden_dim=32)
    with torch.no_grad():
        weights = hnet(torch.arange(8))
    flat = torch.cat([w.flatten(1) for w in weights.values()], dim=1)  # [B, P]
    assert torch.equal(flat, hnet.base.detach().expand_as(flat))  # h(v; Φ) = 0: one network for all
    shapes, start = target_shapes(CNN), 0
    for name, shape in shapes.items():
        part, start = hnet.base.detach()[start : start + shape.numel()], start + shape.numel()
        weight = shapes[name.rsplit(".", 1)[0] + ".weight"]
        bound = weight[1:].numel() ** -0.5  # a uniform of bound 1/√fan_in, as nn.Linear and nn.Conv2d draw
        assert 0.8 * bound < part.abs().max() <= bound, name
        if len(shape) >= 2:
            assert part.var().item() == pytest.approx(bound**2 / 3, rel=0.25), name


def test_base_init_trains_the_offsets_from_the_second_step():
    hnet = hnet_for(SMALL, init="base", base=True)
    loss = lambda: sum(w.pow(2).sum() for w in hnet(torch.arange(3)).values())  # noqa: E731
    optimiser = torch.optim.SGD(hnet.parameters(), lr=0.1)
    for _ in range(2):
        optimiser.zero_grad()
        loss().backward()
        body_grad = sum(p.grad.abs().sum() for p in hnet.body.parameters() if p.grad is not None)
        optimiser.step()
    assert body_grad > 0  # zero output layers leave the body without a gradient only in the first step
    assert not torch.equal(hnet(torch.tensor([0]))["fc1.weight"], hnet(torch.tensor([1]))["fc1.weight"])


def test_base_init_needs_the_base():
    with pytest.raises(ValueError, match="hnet.init=base .* needs hnet.base=true"):
        HyperNetConfig(init="base").validate()


def test_hyperfan_chunked_matches_on_average():
    hnet = hnet_for(CNN, num_clients=64, init="hyperfan_in", output="chunked", hidden_dim=100, chunk_size=4096)
    with torch.no_grad():
        weights = hnet(torch.arange(64))
    flat = torch.cat([w.flatten(1) for w in weights.values()], dim=1)  # [B, P]
    wanted = target_variances(hnet.target_shapes, "in")
    assert flat.var().item() == pytest.approx(wanted.mean().item(), rel=0.3)


def test_spectral_norm_bounds_every_linear_layer():
    hnet = hnet_for(SMALL, spectral_norm=True)
    for _ in range(20):  # power iterations run in training mode
        hnet(torch.tensor([0, 1]))
    hnet.eval()
    linears = [m for m in hnet.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(torch.linalg.matrix_norm(m.weight, ord=2) < 1.05 for m in linears)


def test_noise_input_gives_different_models_for_one_client():
    hnet = hnet_for(SMALL, input="noise")
    trainer = HyperNetTrainer(hnet, OuterConfig(), seed=0)

    ensemble = trainer.generate_ensemble([1, 4], samples=5)

    assert ensemble["fc1.weight"].shape == (5, 2, 8, 16)
    spread = ensemble["fc1.weight"].std(0).mean()
    assert spread > 1e-4
    again = HyperNetTrainer(hnet_for(SMALL, input="noise"), OuterConfig(), seed=0).generate_ensemble([1, 4], 5)
    torch.testing.assert_close(again["fc1.weight"], ensemble["fc1.weight"])  # seeded


def test_evaluation_ensembles_do_not_change_what_training_draws():
    quiet = HyperNetTrainer(hnet_for(SMALL, input="noise"), OuterConfig(), seed=0)
    evaluated = HyperNetTrainer(hnet_for(SMALL, input="noise"), OuterConfig(), seed=0)

    first = quiet.sample_noise(2), evaluated.sample_noise(2)
    evaluated.generate_ensemble([1, 4], samples=5)  # an evaluation between two training rounds
    second = quiet.sample_noise(2), evaluated.sample_noise(2)

    torch.testing.assert_close(*first)
    torch.testing.assert_close(*second)
    assert not torch.equal(first[0], second[0])
    # and a checkpoint carries both generators: a restored trainer draws on as the original does
    restored = HyperNetTrainer(hnet_for(SMALL, input="noise"), OuterConfig(), seed=1)
    restored.load_state_dict(evaluated.state_dict())
    torch.testing.assert_close(restored.sample_noise(2), evaluated.sample_noise(2))
    after = restored.generate_ensemble([1], 3), evaluated.generate_ensemble([1], 3)
    torch.testing.assert_close(after[0]["fc1.weight"], after[1]["fc1.weight"])


def test_descriptor_gradients_are_each_clients_own():
    hnet = hnet_for(SMALL, input="data", embedding_dim=4)
    trainer = HyperNetTrainer(hnet, OuterConfig(lr=0.0, momentum=0.0, weight_decay=0.0))
    descriptors = torch.randn(2, 4, requires_grad=True)
    generated = trainer.generate([0, 1], descriptors)
    trained = {n: w + 0.1 * torch.randn_like(w) for n, w in generated.items()}

    trainer.step([0, 1], trained, [10, 30], descriptors)

    # Each client's own gradient: d/dv_i of -<Δ_i, h(v_i)>, unweighted by example counts.
    for b in range(2):
        v = descriptors[b : b + 1].detach().requires_grad_(True)
        out = hnet.generate(v)
        (sum((-(trained[n][b] - generated[n][b]) * out[n][0]).sum() for n in out)).backward()
        torch.testing.assert_close(descriptors.grad[b], v.grad[0])


def test_unknown_choices_name_the_option():
    with pytest.raises(ValueError, match="hnet.output='spiral'"):
        HyperNetConfig(output="spiral").validate()
    with pytest.raises(ValueError, match="attention_heads"):
        HyperNetConfig(body="attention", hidden_dim=10, attention_heads=4).validate()


def test_spectral_norm_weights_sent_are_the_weights_the_step_differentiates():
    trainer = HyperNetTrainer(hnet_for(SMALL, spectral_norm=True), OuterConfig())
    first = trainer.generate([0, 1])
    again = trainer.generate([0, 1])
    for n in first:  # generating twice does not advance the power iteration
        torch.testing.assert_close(first[n], again[n])
    trainer.step([0, 1], {n: w + 0.01 for n, w in first.items()}, [3, 3])
    moved = trainer.generate([0, 1])
    assert not torch.allclose(moved["fc1.weight"], first["fc1.weight"])


def _flat_weights(hnet: HyperNetwork, clients: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([w.flatten(1) for w in hnet(torch.arange(clients)).values()], dim=1)  # [clients, P]


def test_the_outputs_are_different_functions():
    hidden = 3
    hnets = {out: hnet_for(SMALL, num_clients=40, output=out, hidden_dim=hidden) for out in OUTPUTS}
    sizes = {out: h.num_parameters()["hnet_shared"] for out, h in hnets.items()}
    ranks = {}
    for out, hnet in hnets.items():
        flat = _flat_weights(hnet, 40)
        ranks[out] = int(torch.linalg.matrix_rank(flat - flat.mean(0)))

    assert len(set(sizes.values())) == len(OUTPUTS), sizes
    # per_tensor maps ONE feature vector of `hidden` numbers linearly to every weight: 40 clients'
    # weights span at most `hidden` directions around their mean. Chunked and component read a
    # different feature vector for each chunk or tensor, so theirs span more.
    assert ranks["per_tensor"] <= hidden, ranks
    assert min(r for out, r in ranks.items() if out != "per_tensor") > hidden, ranks


def test_per_tensor_heads_with_the_mlp_body_are_one_flat_linear_map():
    """Why there is no ``flat`` output: one head for all weights is the same model as a head per tensor."""
    hnet = hnet_for(SMALL)
    ids = torch.tensor([0, 2, 5])
    flat = torch.nn.Linear(16, sum(hnet.sizes))
    with torch.no_grad():
        flat.weight.copy_(torch.cat([h.weight for h in hnet.output.heads]))
        flat.bias.copy_(torch.cat([h.bias for h in hnet.output.heads]))
        features = hnet.body.mlp(hnet.conditioner(ids))  # [B, hidden]: the one feature vector

        torch.testing.assert_close(flat(features), _flat_weights(hnet, 6)[ids])


def test_component_generates_every_tensor_from_one_shared_generator():
    hnet = hnet_for(SMALL, output="component")
    sizes = dict(zip(hnet.target_shapes, hnet.sizes, strict=True))
    assert hnet.output.generator.out_features == max(sizes.values())  # as long as the largest tensor
    ids = torch.tensor([1, 4])
    with torch.no_grad():
        distinct = hnet(ids)
        hnet.body.slot_embeddings.copy_(hnet.body.slot_embeddings[0].expand_as(hnet.body.slot_embeddings))
        same_component = hnet(ids)

    k = min(sizes.values())
    leading = {n: w.flatten(1)[:, :k] for n, w in same_component.items()}
    first = leading["fc1.weight"]
    # Told apart only by their embeddings: with one embedding for all, every tensor starts with the same numbers.
    assert all(torch.equal(w, first) for w in leading.values())
    assert not torch.allclose(distinct["fc2.weight"].flatten(1)[:, :k], distinct["fc1.weight"].flatten(1)[:, :k])


def test_hyperfan_component_matches_on_average():
    hnet = hnet_for(CNN, num_clients=64, init="hyperfan_in", output="component", hidden_dim=100)
    flat = _flat_weights(hnet, 64)
    wanted = target_variances(hnet.target_shapes, "in")
    assert flat.var().item() == pytest.approx(wanted.mean().item(), rel=0.3)
