import pytest
import torch
from torch import nn

from fedhyper.hypergrad import hypernet_gradients
from fedhyper.models import ModelConfig, apply, build_model, client_width, initial_weights, target_shapes
from fedhyper.widths import ClientWidths, embed, shrink, slices


def shapes(cfg: ModelConfig, width: float, input_shape=(1, 28, 28)) -> dict[str, torch.Size]:
    return target_shapes(build_model(cfg, input_shape, 10, width))


def test_clients_take_widths_in_turn_and_default_to_full_width():
    cfg = ModelConfig(width_multipliers=[0.25, 0.5, 1])

    assert [client_width(cfg, c) for c in range(5)] == [0.25, 0.5, 1.0, 0.25, 0.5]
    assert client_width(ModelConfig(), 7) == 1.0


@pytest.mark.parametrize("bad", [[0.0], [0.5, 1.5], [-0.25]])
def test_widths_outside_zero_to_one_are_refused_naming_the_option(bad):
    with pytest.raises(ValueError, match="model.width_multipliers"):
        ModelConfig(width_multipliers=bad).validate()


def test_a_half_width_cnn_has_exactly_the_shapes_of_the_leading_slices():
    cfg = ModelConfig(name="cnn")
    full, half = shapes(cfg, 1.0), shapes(cfg, 0.5)

    cut = slices(full, half)

    assert half["conv1.weight"] == (8, 1, 5, 5) and half["conv2.weight"] == (16, 8, 5, 5)
    assert half["fc1.weight"] == (60, 16 * 4 * 4) and half["fc2.weight"] == (42, 60)
    assert half["fc3.weight"] == (10, 42) and half["fc3.bias"] == (10,)  # the classes stay
    weights = {n: torch.randn(s) for n, s in full.items()}
    assert {n: w.shape for n, w in shrink(weights, cut).items()} == half


def test_a_narrow_mlp_scales_its_hidden_layers_only():
    half = shapes(ModelConfig(name="mlp", hidden=200), 0.5)

    assert half["fc1.weight"] == (100, 784) and half["fc2.weight"] == (100, 100) and half["fc3.weight"] == (10, 100)


def test_a_small_dim_larger_than_the_full_one_is_an_error():
    with pytest.raises(ValueError, match="fc1.weight"):
        slices({"fc1.weight": (4, 8)}, {"fc1.weight": (5, 8)})


def test_shrink_then_embed_round_trips_and_keeps_the_template_outside_the_slice():
    cfg = ModelConfig(name="cnn")
    cut = slices(shapes(cfg, 1.0), shapes(cfg, 0.25))
    full = {n: torch.randn(s) for n, s in shapes(cfg, 1.0).items()}
    template = {n: torch.randn(s) for n, s in shapes(cfg, 1.0).items()}

    back = embed(shrink(full, cut), template, cut)

    for name, w in back.items():
        inside = torch.zeros_like(w, dtype=torch.bool)
        inside[cut[name]] = True
        assert torch.equal(w[inside], full[name][inside])
        assert torch.equal(w[~inside], template[name][~inside])


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_the_narrow_model_is_the_full_model_with_zeros_outside_its_slice(name):
    # Exact because flatten is channel-major: the narrow fc1 reads the first channels' features.
    cfg = ModelConfig(name=name)
    cut = slices(shapes(cfg, 1.0), shapes(cfg, 0.5))
    small = initial_weights(cfg, (1, 28, 28), 10, seed=0, width=0.5)
    zeros = {n: torch.zeros(s) for n, s in shapes(cfg, 1.0).items()}
    x = torch.randn(6, 1, 28, 28)

    narrow_out = apply(build_model(cfg, (1, 28, 28), 10, 0.5), small, x)
    full_out = apply(build_model(cfg, (1, 28, 28), 10), embed(small, zeros, cut), x)

    torch.testing.assert_close(narrow_out, full_out)


class TinyHyperNet(nn.Module):
    """An embedding table and one linear layer to a flat vector of target weights."""

    def __init__(self, full: dict[str, torch.Size], num_clients: int) -> None:
        super().__init__()
        self.full = full
        self.emb = nn.Embedding(num_clients, 3)
        self.out = nn.Linear(3, sum(s.numel() for s in full.values()))

    def forward(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = self.out(emb).split([s.numel() for s in self.full.values()], dim=1)
        return {n: p.view(len(emb), *s) for (n, s), p in zip(self.full.items(), parts, strict=True)}


def test_the_hypernet_gradient_from_embedded_deltas_is_autograd_through_the_narrow_models():
    # Two clients, widths 0.5 and 1.0; each "trains" one gradient step on its own loss.
    torch.set_default_dtype(torch.float64)
    try:
        cfg = ModelConfig(name="mlp", hidden=6, width_multipliers=[0.5, 1.0])
        full = shapes(cfg, 1.0, (1, 2, 2))
        cuts = [slices(full, shapes(cfg, client_width(cfg, c), (1, 2, 2))) for c in range(2)]
        hnet = TinyHyperNet(full, 2)
        x, y = torch.randn(2, 5, 1, 2, 2), torch.randint(0, 10, (2, 5))
        models = [build_model(cfg, (1, 2, 2), 10, client_width(cfg, c)) for c in range(2)]

        def loss(c: int, weights: dict[str, torch.Tensor]) -> torch.Tensor:
            return nn.functional.cross_entropy(apply(models[c], weights, x[c]), y[c])

        emb = hnet.emb(torch.arange(2))
        generated = hnet(emb)
        narrow = [shrink({n: w[c] for n, w in generated.items()}, cuts[c]) for c in range(2)]
        total = sum(loss(c, narrow[c]) for c in range(2))
        expected = torch.autograd.grad(total, [*hnet.out.parameters(), emb], retain_graph=True)

        trained = []  # θ_i = θ̃_i − ∇L_i(θ̃_i): then −Δ_i is the narrow model's gradient
        for c in range(2):
            start = {n: w.detach().requires_grad_() for n, w in narrow[c].items()}
            grads = torch.autograd.grad(loss(c, start), list(start.values()))
            small = {n: w - g for (n, w), g in zip(start.items(), grads, strict=True)}
            trained.append(embed(small, {n: w[c].detach() for n, w in generated.items()}, cuts[c]))
        deltas = {n: torch.stack([t[n] for t in trained]) - generated[n].detach() for n in generated}
        shared, emb_grads = hypernet_gradients(generated, deltas, torch.ones(2), list(hnet.out.parameters()), emb)
    finally:
        torch.set_default_dtype(torch.float32)

    outside = torch.ones_like(deltas["fc2.weight"][0], dtype=torch.bool)
    outside[cuts[0]["fc2.weight"]] = False
    assert outside.any() and torch.equal(deltas["fc2.weight"][0][outside], torch.zeros(int(outside.sum())))
    for got, want in zip([*shared, emb_grads], expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_client_widths_split_and_join_a_batch_of_mixed_widths():
    cfg = ModelConfig(name="cnn", width_multipliers=[0.5, 1.0])
    full = shapes(cfg, 1.0)
    widths = ClientWidths(cfg, (1, 28, 28), 10, full)
    generated = {n: torch.randn(3, *s) for n, s in full.items()}  # clients 4, 5, 6

    parts = widths.split([4, 5, 6], generated)
    trained = {c: {n: w + 1 for n, w in p.items()} for c, p in parts.items()}
    joined = widths.join([4, 5, 6], trained, generated)

    assert parts[4]["conv1.weight"].shape == (8, 1, 5, 5) and parts[5]["conv1.weight"].shape == (16, 1, 5, 5)
    assert torch.equal(joined["fc1.weight"][1], generated["fc1.weight"][1] + 1)  # full width: all trained
    assert torch.equal(joined["fc1.weight"][0, :60, :256], generated["fc1.weight"][0, :60, :256] + 1)
    assert torch.equal(joined["fc1.weight"][0, 60:], generated["fc1.weight"][0, 60:])  # untouched: Δ = 0
    assert torch.equal(joined["fc1.weight"][0, :, 256:], generated["fc1.weight"][0, :, 256:])
