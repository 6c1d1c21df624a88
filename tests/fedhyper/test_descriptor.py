import pytest
import torch

from fedhyper.descriptor import DescriptorNet, describe, descriptor_vjp, example_subset


def data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=g), torch.randint(0, 5, (n,), generator=g)


@pytest.fixture
def psi() -> DescriptorNet:
    return DescriptorNet(in_features=36, num_classes=5, dim=7, hidden=8)


def test_the_descriptor_is_the_mean_of_psi_over_the_examples(psi):
    x, y = data()

    v = describe(psi, x, y)

    assert v.shape == (7,)
    torch.testing.assert_close(v, psi(x, y).mean(dim=0))


def test_the_descriptor_does_not_depend_on_the_order_of_the_examples(psi):
    x, y = data()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))

    torch.testing.assert_close(describe(psi, x[perm], y[perm]), describe(psi, x, y))


def test_the_label_enters_the_descriptor(psi):
    x, y = data()

    assert not torch.allclose(describe(psi, x, (y + 1) % 5), describe(psi, x, y))


def test_a_capped_description_reads_the_same_seeded_subset_every_time(psi):
    x, y = data(n=40)

    idx = example_subset(40, max_examples=10, seed=3)
    v = describe(psi, x, y, max_examples=10, seed=3)

    assert len(idx) == len(set(idx.tolist())) == 10
    torch.testing.assert_close(v, psi(x[idx], y[idx]).mean(dim=0))
    torch.testing.assert_close(v, describe(psi, x, y, max_examples=10, seed=3))
    assert not torch.allclose(v, describe(psi, x, y, max_examples=10, seed=4))


def test_descriptor_vjp_is_the_gradient_of_grad_v_dot_the_descriptor(psi):
    x, y = data()
    grad_v = torch.randn(7, generator=torch.Generator().manual_seed(2))

    grads = descriptor_vjp(psi, x, y, grad_v, max_examples=25, seed=5)
    (grad_v * describe(psi, x, y, max_examples=25, seed=5)).sum().backward()

    assert set(grads) == {name for name, _ in psi.named_parameters()}
    for name, p in psi.named_parameters():
        torch.testing.assert_close(grads[name], p.grad)


def test_descriptor_vjp_matches_a_finite_difference():
    psi = DescriptorNet(in_features=36, num_classes=5, dim=7, hidden=8).double()
    x, y = data()
    x = x.double()
    grad_v = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    grads = descriptor_vjp(psi, x, y, grad_v)
    eps = 1e-6
    with torch.no_grad():
        w = psi.features.weight
        w[3, 4] += eps
        up = (grad_v * describe(psi, x, y)).sum()
        w[3, 4] -= 2 * eps
        down = (grad_v * describe(psi, x, y)).sum()

    assert float(grads["features.weight"][3, 4]) == pytest.approx(float(up - down) / (2 * eps), rel=1e-5, abs=1e-9)


def test_a_client_rebuilds_psi_from_its_weights_alone(psi):
    x, y = data()

    copy = DescriptorNet.from_weights({n: w.clone() for n, w in psi.state_dict().items()})

    assert (copy.num_classes, copy.features.out_features, copy.out.out_features) == (5, 8, 7)
    torch.testing.assert_close(describe(copy, x, y), describe(psi, x, y))


def test_psi_weights_with_other_names_are_refused(psi):
    with pytest.raises(ValueError, match="four tensors"):
        DescriptorNet.from_weights({"fc.weight": torch.zeros(3, 3)})
