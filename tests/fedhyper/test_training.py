import math

import pytest
import torch

from fedhyper.models import ModelConfig, build_model, target_shapes
from fedhyper.training import LocalTrainConfig, batches, evaluate, train_local, train_mutual


def separable(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 4, 4) * 0.3 + (y.float() * 2 - 1).view(-1, 1, 1, 1)
    return x, y


def test_local_training_lowers_the_loss_and_leaves_the_input_untouched():
    model = build_model(ModelConfig(name="mlp", hidden=16), (1, 4, 4), 2)
    start = {n: torch.randn(s) * 0.1 for n, s in target_shapes(model).items()}
    copy = {n: w.clone() for n, w in start.items()}
    x, y = separable()
    before, _ = evaluate(model, start, x, y)

    trained, train_loss = train_local(
        model, start, x, y, LocalTrainConfig(steps=30, lr=0.1), torch.Generator().manual_seed(0)
    )
    after, accuracy = evaluate(model, trained, x, y)

    assert after < before and accuracy > 0.9 and train_loss > 0
    assert all(torch.equal(start[n], copy[n]) for n in start)


def test_batches_walk_whole_epochs_and_are_reproducible():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)

    a = list(batches(10, 4, 6, g1))
    b = list(batches(10, 4, 6, g2))

    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert sorted(torch.cat(a[:3]).tolist()) == list(range(10))  # first epoch: 4 + 4 + 2


def test_a_diverged_models_examples_are_wrong_predictions_at_the_loss_of_a_uniform_guess():
    model = build_model(ModelConfig(name="mlp", hidden=16), (1, 4, 4), 2)
    x, y = separable(8)
    weights, _ = train_local(
        model, {n: torch.randn(s) * 0.1 for n, s in target_shapes(model).items()}, x, y,
        LocalTrainConfig(steps=30, lr=0.1), torch.Generator().manual_seed(0),
    )  # fmt: skip
    loss, accuracy = evaluate(model, weights, x, y)
    broken = x.clone()
    broken[:3] = float("nan")  # three examples whose logits are NaN

    part_loss, part_accuracy = evaluate(model, weights, broken, y)
    all_loss, all_accuracy = evaluate(model, {n: w * float("inf") for n, w in weights.items()}, x, y)

    assert accuracy == 1.0
    assert part_accuracy == 5 / 8
    tail_loss, _ = evaluate(model, weights, x[3:], y[3:])
    assert abs(part_loss - (3 * math.log(2) + 5 * tail_loss) / 8) < 1e-6
    assert (all_loss, all_accuracy) == (math.log(2), 0.0)
    huge = {n: w * 1e30 if n.endswith("weight") else w for n, w in weights.items()}  # finite logits, loss inf
    huge_loss, huge_accuracy = evaluate(model, huge, x, y)
    assert math.isfinite(huge_loss) and 0.0 <= huge_accuracy <= 1.0


def test_max_grad_norm_bounds_each_step_and_zero_leaves_training_as_it_was():
    model = build_model(ModelConfig(name="mlp", hidden=16), (1, 4, 4), 2)
    start = {n: torch.randn(s) * 0.1 for n, s in target_shapes(model).items()}
    x, y = separable(64)
    one_step = dict(steps=1, lr=1.0, momentum=0.0, weight_decay=0.0)

    free, _ = train_local(model, start, x, y, LocalTrainConfig(**one_step), torch.Generator().manual_seed(0))
    clipped, _ = train_local(
        model, start, x, y, LocalTrainConfig(**one_step, max_grad_norm=1e-3), torch.Generator().manual_seed(0)
    )
    off, _ = train_local(
        model, start, x, y, LocalTrainConfig(**one_step, max_grad_norm=0.0), torch.Generator().manual_seed(0)
    )

    step = lambda w: sum(float(((w[n] - start[n]) ** 2).sum()) for n in start) ** 0.5  # noqa: E731
    assert abs(step(clipped) - 1e-3) < 1e-6 < step(free) - 1e-3  # lr 1: the step is the clipped gradient
    assert all(torch.equal(free[n], off[n]) for n in start)


def disagreement(model, a, b, x) -> float:
    """Mean KL between two weight sets' predicted probabilities on x."""
    from fedhyper.models import apply

    with torch.no_grad():
        log_a = torch.log_softmax(apply(model, a, x), dim=1)
        log_b = torch.log_softmax(apply(model, b, x), dim=1)
    return float(torch.nn.functional.kl_div(log_a, log_b, reduction="batchmean", log_target=True))


def test_mutual_training_at_weight_0_is_each_model_trained_alone_on_the_same_batches():
    model = build_model(ModelConfig(name="mlp", hidden=16), (1, 4, 4), 2)
    starts = [{n: torch.randn(s, generator=torch.Generator().manual_seed(k)) * 0.3
               for n, s in target_shapes(model).items()} for k in (1, 2)]  # fmt: skip
    x, y = separable()
    cfg = LocalTrainConfig(steps=9, lr=0.05, max_grad_norm=1.0)

    (a, b), loss = train_mutual(model, starts, x, y, cfg, torch.Generator().manual_seed(0), [7, 4], 0.0)
    alone_a, loss_a = train_local(model, starts[0], x, y, cfg, torch.Generator().manual_seed(0), steps=7)
    alone_b, loss_b = train_local(model, starts[1], x, y, cfg, torch.Generator().manual_seed(0), steps=4)

    for got, want in ((a, alone_a), (b, alone_b)):
        for n in want:
            torch.testing.assert_close(got[n], want[n])
    assert loss == pytest.approx((loss_a + loss_b) / 2)


def test_mutual_training_pulls_the_two_models_predictions_together():
    model = build_model(ModelConfig(name="mlp", hidden=16), (1, 4, 4), 2)
    starts = [{n: torch.randn(s, generator=torch.Generator().manual_seed(k)) * 0.5
               for n, s in target_shapes(model).items()} for k in (1, 2)]  # fmt: skip
    x, y = separable()
    y = torch.where(torch.rand(len(y), generator=torch.Generator().manual_seed(5)) < 0.3, 1 - y, y)  # noisy labels
    cfg = LocalTrainConfig(steps=40, lr=0.05)

    def trained(weight: float):
        return train_mutual(model, starts, x, y, cfg, torch.Generator().manual_seed(0), [40, 40], weight)[0]

    apart, together = trained(0.0), trained(2.0)

    assert disagreement(model, *together, x) < 0.7 * disagreement(model, *apart, x)  # measured: 0.029 against 0.053


def test_an_ensembles_member_weights_set_its_averaged_prediction():
    from fedhyper.training import evaluate_ensemble

    model = build_model(ModelConfig(name="mlp", hidden=16), (1, 4, 4), 2)
    x, y = separable()
    good, _ = train_local(
        model, {n: torch.randn(s) * 0.1 for n, s in target_shapes(model).items()}, x, y,
        LocalTrainConfig(steps=30, lr=0.1), torch.Generator().manual_seed(0),
    )  # fmt: skip
    flipped = {**good, "fc3.weight": -good["fc3.weight"], "fc3.bias": -good["fc3.bias"]}  # predicts the other class

    equal = evaluate_ensemble(model, [good, flipped], x, y)
    assert evaluate_ensemble(model, [good, flipped], x, y, [0.5, 0.5]) == equal  # the plain mean, bit for bit
    leaning = evaluate_ensemble(model, [good, flipped], x, y, [0.8, 0.2])
    assert leaning["accuracy"] == evaluate(model, good, x, y)[1] > 0.9 > equal["accuracy"]
    assert evaluate_ensemble(model, [good, flipped], x, y, [0.2, 0.8])["accuracy"] < 0.1
    assert leaning["mutual_information"] < equal["mutual_information"]
    with pytest.raises(ValueError, match="summing to 1"):
        evaluate_ensemble(model, [good, flipped], x, y, [0.7, 0.7])
