import pytest
import torch

from fedhyper.models import ModelConfig, apply, build_model, target_shapes


@pytest.mark.parametrize(
    ("name", "shape"), [("cnn", (1, 28, 28)), ("cnn", (3, 32, 32)), ("mlp", (1, 28, 28)), ("mlp", (3, 32, 32))]
)
def test_functional_call_equals_the_module_with_the_same_weights_loaded(name, shape):
    model = build_model(ModelConfig(name=name), shape, 10)
    weights = {n: torch.randn(s) * 0.1 for n, s in target_shapes(model).items()}
    x = torch.randn(5, *shape)

    out = apply(model, weights, x)
    model.load_state_dict(weights)
    expected = model(x)

    assert out.shape == (5, 10)
    torch.testing.assert_close(out, expected)


def test_cnn_has_pfedhn_layout():
    shapes = target_shapes(build_model(ModelConfig(name="cnn"), (1, 28, 28), 10))

    assert shapes["conv1.weight"] == (16, 1, 5, 5)
    assert shapes["conv2.weight"] == (32, 16, 5, 5)
    assert shapes["fc1.weight"] == (120, 32 * 4 * 4)
    assert shapes["fc3.weight"] == (10, 84)


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="cnn, mlp"):
        build_model(ModelConfig(name="resnet"), (1, 28, 28), 10)
