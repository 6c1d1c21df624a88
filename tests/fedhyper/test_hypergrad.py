import pytest
import torch
from torch.func import jacrev

from fedhyper.hypergrad import example_weights, hypernet_gradients
from fedhyper.outer import HyperNetTrainer, OuterConfig


def test_delta_backprop_equals_the_explicit_jacobian_transpose_product(tiny_hnet):
    hnet = tiny_hnet()
    ids = torch.tensor([0, 2])
    emb = hnet.conditioner(ids)
    generated = hnet.generate(emb)
    deltas = {n: torch.randn_like(t) for n, t in generated.items()}
    w = example_weights([30, 10])
    shared = hnet.shared_parameters()

    shared_grads, emb_grads = hypernet_gradients(generated, deltas, w, shared, emb)

    # Chain rule by hand: for each parameter, the full Jacobian of the output, then Jᵀ(−Σ w_i Δ_i).
    names = dict(hnet.named_parameters())
    for p, g in zip(shared, shared_grads, strict=True):
        name = next(n for n, q in names.items() if q is p)

        def out_of(value, name=name):
            params = {**{n: q.detach() for n, q in names.items()}, name: value}
            gen = torch.func.functional_call(hnet, params, (ids,))
            return torch.cat([gen[n].flatten() for n in generated])

        jac = jacrev(out_of)(p.detach())  # [outputs, *p.shape]
        v = torch.cat([(-deltas[n] * w.view(-1, *[1] * (deltas[n].dim() - 1))).flatten() for n in generated])
        expected = torch.tensordot(v, jac, dims=1)
        torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-6)

    # Each embedding row gets its own client's gradient, not scaled by w_i.
    for b in range(2):

        def out_b(e, b=b):
            gen = hnet.generate(e.unsqueeze(0))
            return torch.cat([gen[n].flatten() for n in generated])

        jac = jacrev(out_b)(emb[b].detach())  # [outputs, emb_dim]
        v = torch.cat([-deltas[n][b].flatten() for n in generated])
        torch.testing.assert_close(emb_grads[b], v @ jac, rtol=1e-4, atol=1e-6)


def test_example_weights_follow_counts_and_refuse_empty_clients():
    torch.testing.assert_close(example_weights([1, 3], "mean"), torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(example_weights([1, 3], "sum"), torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="positive"):
        example_weights([5, 0])
    with pytest.raises(ValueError, match="sum, mean"):
        example_weights([5, 1], "median")


def test_sum_doubles_the_shared_step_of_mean_for_two_clients_and_leaves_embeddings_alone(tiny_hnet):
    a, b = tiny_hnet(), tiny_hnet()
    b.load_state_dict(a.state_dict())
    start = {n: p.detach().clone() for n, p in a.named_parameters()}
    plain = dict(lr=0.1, momentum=0.0, weight_decay=0.0, grad_clip=0.0)
    summed, averaged = (
        HyperNetTrainer(a, OuterConfig(**plain, aggregate="sum")),
        HyperNetTrainer(b, OuterConfig(**plain)),
    )
    averaged.cfg.aggregate = "mean"
    trained = {n: t + 1.0 for n, t in summed.generate([0, 1]).items()}

    summed.step([0, 1], trained, [10, 30])
    averaged.step([0, 1], trained, [10, 30])

    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    for n, p0 in start.items():
        if n == "conditioner.table.weight":
            torch.testing.assert_close(pa[n], pb[n])
        else:
            torch.testing.assert_close(pa[n] - p0, 2 * (pb[n] - p0), rtol=1e-4, atol=1e-7)
    assert not torch.equal(pa["conditioner.table.weight"], start["conditioner.table.weight"])


def test_an_outer_step_moves_generated_weights_towards_the_trained_ones(tiny_hnet):
    hnet = tiny_hnet()
    trainer = HyperNetTrainer(hnet, OuterConfig(lr=0.05, momentum=0.0, weight_decay=0.0))
    ids = [1, 3]
    before = trainer.generate(ids)
    trained = {n: t + 0.5 for n, t in before.items()}

    def distance() -> float:
        now = trainer.generate(ids)
        return sum(float(((now[n] - trained[n]) ** 2).sum()) for n in now)

    start = distance()
    for _ in range(5):
        trainer.step(ids, trained, [10, 20])

    assert distance() < 0.5 * start
    untouched = trainer.generate([0])
    assert hnet.conditioner.table.weight.grad[0].abs().sum() == 0  # client 0 did not take part
    assert untouched["w"].shape == (1, 3, 2)


@pytest.mark.parametrize(
    ("weighting", "aggregate", "expected"),
    [
        ("examples", "sum", [1.5, 0.5]),  # K n_i / Σn: the bigger client counts for more
        ("examples", "mean", [0.75, 0.25]),
        ("uniform", "sum", [1.0, 1.0]),  # each client one pFedHN step, whatever its size
        ("uniform", "mean", [0.5, 0.5]),
    ],
)
def test_a_steps_client_weights_follow_its_weighting_and_aggregate(weighting, aggregate, expected):
    cfg = OuterConfig(weighting=weighting, aggregate=aggregate)

    assert cfg.client_weights([30, 10]).tolist() == expected


def test_an_unknown_weighting_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="strategy.outer.weighting='size' is unknown; choose one of uniform, examples"):
        OuterConfig(weighting="size").validate()


def test_a_cosine_schedule_scales_every_step_by_its_round_s_share_of_the_learning_rate(tiny_hnet):
    assert [OuterConfig(schedule="cosine").lr_factor(r, 4) for r in (1, 3, 4, 9)] == pytest.approx(
        [1.0, 0.5, 0.5 * (1 + torch.cos(torch.tensor(0.75 * torch.pi)).item()), 0.1464466]
    )
    assert OuterConfig().lr_factor(3, 4) == 1.0
    a, b = tiny_hnet(), tiny_hnet()
    b.load_state_dict(a.state_dict())
    start = {n: p.detach().clone() for n, p in a.named_parameters()}
    plain = dict(lr=0.1, momentum=0.0, weight_decay=0.0, grad_clip=0.0)
    cosine = HyperNetTrainer(a, OuterConfig(**plain, schedule="cosine"), num_rounds=4)
    constant = HyperNetTrainer(b, OuterConfig(**plain), num_rounds=4)
    trained = {n: t + 1.0 for n, t in cosine.generate([0, 1]).items()}

    cosine.step([0, 1], trained, [10, 30], server_round=3)
    constant.step([0, 1], trained, [10, 30], server_round=3)

    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    for n, p0 in start.items():  # plain SGD: the same gradient at half the learning rate, embeddings too
        torch.testing.assert_close(pa[n] - p0, 0.5 * (pb[n] - p0), rtol=1e-4, atol=1e-7)
    assert [g["lr"] for g in cosine.optimizer.param_groups] == pytest.approx([0.05, 0.05])
    with pytest.raises(ValueError, match="constant, cosine"):
        OuterConfig(schedule="linear").validate()


@pytest.mark.parametrize("aggregate", ["sum", "mean"])
def test_a_shared_base_takes_fedavgs_step_and_phi_the_step_it_takes_without_one(tiny_hnet, aggregate):
    plain, based = tiny_hnet(), tiny_hnet(base=True)
    ids = [0, 2]
    torch.testing.assert_close(  # a zero base: the same seed's weights
        torch.cat([w.flatten() for w in HyperNetTrainer(plain, OuterConfig()).generate(ids).values()]),
        torch.cat([w.flatten() for w in HyperNetTrainer(based, OuterConfig()).generate(ids).values()]),
    )
    cfg = dict(lr=0.01, optimizer="adam", weighting="examples", aggregate=aggregate, grad_clip=1e-3)
    without = HyperNetTrainer(plain, OuterConfig(**cfg))
    with_base = HyperNetTrainer(based, OuterConfig(**cfg, base_lr=0.5))
    before = without.generate(ids)
    deltas = {n: torch.randn_like(t) for n, t in before.items()}
    trained = {n: t + deltas[n] for n, t in before.items()}

    norm_without = without.step(ids, trained, [30, 10], server_round=1)
    norm_with = with_base.step(ids, trained, [30, 10], server_round=1)

    mean_delta = torch.cat([(0.75 * deltas[n][0] + 0.25 * deltas[n][1]).flatten() for n in before])
    torch.testing.assert_close(based.base.detach(), 0.5 * mean_delta)  # unclipped, whatever grad_clip says
    assert norm_with == pytest.approx(norm_without)  # the base is outside Φ's gradient norm and clipping
    others = [q for n, q in based.named_parameters() if n != "base"]
    for (name, p), q in zip(plain.named_parameters(), others, strict=True):
        torch.testing.assert_close(p, q, msg=name)  # Φ and the embeddings stepped as they would without it
    assert all(based.base is not p for group in with_base.optimizer.param_groups for p in group["params"])
    with pytest.raises(ValueError, match="base_lr=0.0 must be positive"):
        OuterConfig(base_lr=0.0).validate()
