"""Client-level DP: the accountant against dp-accounting, per-client clipping, the noise, bad options, checkpoints."""

import math
import os

import pytest
import torch
from dp_accounting import dp_event
from dp_accounting.privacy_accountant import NeighboringRelation
from dp_accounting.rdp import RdpAccountant

from fedhyper import checkpoint, privacy
from fedhyper.config import ExperimentConfig
from fedhyper.hypergrad import flat_norms, hypernet_gradients, per_client_gradients
from fedhyper.hypernet import HyperNetConfig, HyperNetwork
from fedhyper.models import MLPTarget, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig
from fedhyper.training import LocalTrainConfig, train_local
from strategies.pfedhn import PFedHNConfig


def mech(sigma: float, clip: float = 1.0, k: int = 4, n: int = 50, delta: float = 1e-3, **kw) -> privacy.Mechanism:
    return privacy.Mechanism(sigma, clip, delta, k, n, rounds=100, max_epsilon=kw.get("max_epsilon"), noise_seed=3)


@pytest.mark.parametrize(("sigma", "k", "n", "rounds"), [(1.0, 4, 50, 12), (3.0, 10, 100, 25), (0.6, 2, 7, 5)])
def test_epsilon_equals_what_dp_accounting_computes_for_the_same_events(sigma, k, n, rounds):
    ours = mech(sigma, k=k, n=n).epsilon(rounds)

    direct = RdpAccountant(privacy.ORDERS, NeighboringRelation.REPLACE_ONE)
    # noise std σ·C over the replace-one sensitivity 2C: multiplier σ/2, K of N without replacement, per round
    event = dp_event.SampledWithoutReplacementDpEvent(n, k, dp_event.GaussianDpEvent(sigma / 2))
    for _ in range(rounds):
        direct.compose(event)

    assert ours == pytest.approx(direct.get_epsilon(1e-3), rel=1e-9)
    assert mech(sigma * 2, k=k, n=n).epsilon(rounds) < ours < mech(sigma, k=k, n=n).epsilon(rounds + 1)


def test_a_calibrated_sigma_spends_the_target_over_the_runs_rounds_and_no_less():
    sigma = privacy.calibrate(4.0, 1 / 50, 40, 4, 50)

    assert privacy.epsilon(sigma, 40, 4, 50, 1 / 50) <= 4.0
    assert privacy.epsilon(sigma * 0.995, 40, 4, 50, 1 / 50) > 4.0


def pfedhn_config(**privacy_options) -> ExperimentConfig:
    cfg = ExperimentConfig(strategy=PFedHNConfig())
    for key, value in privacy_options.items():
        setattr(cfg.privacy, key, value)
    return cfg


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"noise_multiplier": -1.0}, "privacy.noise_multiplier=-1.0 must be a finite number >= 0"),
        ({"noise_multiplier": 1.0, "clip": 0.0}, "privacy.clip=0.0 must be positive"),
        ({"noise_multiplier": 1.0, "delta": 1.0}, "privacy.delta=1.0 must be in (0, 1)"),
        ({"noise_multiplier": 1.0, "delta": 0.0}, "privacy.delta=0.0 must be in (0, 1)"),
        ({"noise_multiplier": 1.0, "target_epsilon": 2.0}, "not both"),
        ({"noise_multiplier": 1.0, "clip": math.inf}, "privacy.clip=inf bounds nothing"),
        ({"max_epsilon": 3.0}, "privacy.max_epsilon needs"),
        ({"target_epsilon": -2.0}, "privacy.target_epsilon=-2.0 must be positive"),
    ],
)
def test_a_bad_privacy_option_is_one_line_naming_it(options, message):
    with pytest.raises(ValueError, match=None) as err:
        pfedhn_config(**options).validate()

    assert message in str(err.value) and "\n" not in str(err.value)


def test_privacy_is_off_by_default_and_refused_where_no_private_path_exists():
    assert privacy.mechanism(pfedhn_config()) is None
    pefll = pfedhn_config(noise_multiplier=1.0)
    pefll.hnet.input = "data"
    with pytest.raises(ValueError, match="privacy.* is not implemented for strategy=pfedhn with hnet.input=data"):
        pefll.validate()


# --- the hypernetwork's outer step --------------------------------------------------------------


def trained_round(hnet: HyperNetwork, ids: list[int], steps: int) -> dict[str, torch.Tensor]:
    """Real local updates: each client trains its generated MLP on its own data (labels differ per client)."""
    target = MLPTarget(12, 3, hidden=6)
    with torch.no_grad():
        generated = hnet(torch.as_tensor(ids))
    out = []
    for b, cid in enumerate(ids):
        g = torch.Generator().manual_seed(cid)
        x = torch.randn(64, 12, generator=g)
        y = (x[:, cid % 12] > 0).long() + (cid % 2)
        cfg = LocalTrainConfig(steps=steps, lr=0.5, batch_size=16)
        weights, _ = train_local(target, {n: w[b] for n, w in generated.items()}, x, y, cfg, g)
        out.append(weights)
    return {n: torch.stack([w[n] for w in out]) for n in generated}


def tiny_hnet() -> HyperNetwork:
    torch.manual_seed(0)
    return HyperNetwork(target_shapes(MLPTarget(12, 3, hidden=6)), 6, HyperNetConfig(embedding_dim=3, hidden_dim=8))


def test_per_client_gradients_sum_to_the_batched_gradient_and_match_one_backward_each():
    hnet, ids = tiny_hnet(), [0, 3, 5]
    trained = trained_round(hnet, ids, steps=5)
    leaf = hnet.conditioner(torch.as_tensor(ids)).detach().requires_grad_(True)
    generated = hnet.generate(leaf)
    deltas = {n: trained[n] - generated[n].detach() for n in generated}
    shared, ones = hnet.shared_parameters(), torch.ones(3)

    rows = per_client_gradients(hnet, shared, leaf, {n: -d for n, d in deltas.items()}, chunk_size=2)
    summed, _ = hypernet_gradients(generated, deltas, ones, shared, leaf)
    first, _ = hypernet_gradients(hnet.generate(leaf[:1]), {n: d[:1] for n, d in deltas.items()}, ones[:1], shared,
                                  leaf)  # fmt: skip

    for row, total, alone in zip(rows, summed, first, strict=True):
        torch.testing.assert_close(row.sum(0), total, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(row[0], alone, rtol=1e-5, atol=1e-6)


def test_every_clients_clipped_contribution_has_norm_at_most_c_measured_on_real_updates():
    hnet, ids = tiny_hnet(), [0, 1, 2, 3, 4, 5]
    trained = trained_round(hnet, ids, steps=10)
    leaf = hnet.conditioner(torch.as_tensor(ids)).detach().requires_grad_(True)
    generated = hnet.generate(leaf)
    deltas = {n: trained[n] - generated[n].detach() for n in generated}
    shared = hnet.shared_parameters()
    raw = flat_norms(per_client_gradients(hnet, shared, leaf, {n: -d for n, d in deltas.items()}))
    clip = float(raw.median())  # half the clients above C
    clipping = privacy.ClientClipping(mech(0.0, clip=clip))

    weights = clipping.clipped(OuterConfig().client_weights([40] * len(ids), private=True), hnet, shared, leaf, deltas)
    cotangents = {n: -d * weights.view(-1, *[1] * (d.dim() - 1)) for n, d in deltas.items()}
    clipped = flat_norms(per_client_gradients(hnet, shared, leaf, cotangents))
    total, emb = hypernet_gradients(generated, deltas, weights, shared, leaf)

    assert (raw > clip * 1.05).sum() >= 2 and (raw < clip).sum() >= 2
    assert bool((clipped <= clip * (1 + 1e-5)).all())
    torch.testing.assert_close(clipped[raw > clip], torch.full_like(raw[raw > clip], clip), rtol=1e-5, atol=0)
    torch.testing.assert_close(clipped[raw <= clip], raw[raw <= clip], rtol=1e-5, atol=0)  # untouched
    unclipped_emb = hypernet_gradients(hnet.generate(leaf), deltas, torch.ones(6), shared, leaf)[1]
    torch.testing.assert_close(emb, unclipped_emb, rtol=1e-5, atol=1e-7)  # embedding rows are not clipped
    assert flat_norms([g.unsqueeze(0) for g in total]).item() <= clip * len(ids) * (1 + 1e-5)


def steps_of(clipping: privacy.ClientClipping | None, counts: list[int], grad_clip: float = 50.0) -> HyperNetTrainer:
    hnet = tiny_hnet()
    # example weights asked for, so that a private step's uniform weights are the clipping's doing
    trainer = HyperNetTrainer(hnet, OuterConfig(grad_clip=grad_clip, weighting="examples"), seed=0, privacy=clipping)
    for ids in ([0, 2, 4], [1, 3, 5]):
        trainer.step(ids, trained_round(hnet, ids, steps=5), counts)
    return trainer


def test_with_sigma_zero_and_c_infinite_the_private_step_changes_no_bit():
    plain = steps_of(None, [40, 40, 40])
    private = steps_of(privacy.ClientClipping(mech(0.0, clip=math.inf)), [40, 40, 40])

    for (name, a), b in zip(plain.hnet.state_dict().items(), private.hnet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # a finite C does change the step (the comparison can fail)
    clipped = steps_of(privacy.ClientClipping(mech(0.0, clip=1e-3)), [40, 40, 40])
    assert not torch.equal(plain.hnet.state_dict()["body.mlp.0.weight"], clipped.hnet.state_dict()["body.mlp.0.weight"])


def test_a_private_step_weighs_its_clients_alike_whatever_their_example_counts():
    # Example weighting, asked for by steps_of, would give the client of 30 examples three times the weight of the
    # one of 10: under DP a count is the client's data, and through n_i / Σn it would move every other client's weight.
    exact = privacy.ClientClipping(mech(0.0, clip=math.inf))
    unequal, equal = steps_of(exact, [10, 20, 30]), steps_of(exact, [40, 40, 40])
    plain_unequal, plain_equal = steps_of(None, [10, 20, 30]), steps_of(None, [40, 40, 40])

    for (name, a), b in zip(unequal.hnet.state_dict().items(), equal.hnet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    name = "body.mlp.0.weight"  # without DP the counts do set the step (the comparison above can fail)
    assert not torch.equal(plain_unequal.hnet.state_dict()[name], plain_equal.hnet.state_dict()[name])


def test_the_noise_on_phis_gradient_has_std_sigma_times_c():
    sigma, clip = 3.0, 0.2
    quiet = steps_of(privacy.ClientClipping(mech(0.0, clip=clip)), [10, 20, 30], grad_clip=0)
    noisy = steps_of(privacy.ClientClipping(mech(sigma, clip=clip)), [10, 20, 30], grad_clip=0)
    # Both moved Φ by SGD with momentum 0.9 over two steps: Φ₂ = Φ₀ − lr (g₁ + g₂ + 0.9 g₁) − decay terms, and the
    # difference after step 1 is lr·noise₁ only; compare the first step's momentum buffers (g₁ + wd·Φ₀).
    diffs = [noisy.optimizer.state[p]["momentum_buffer"] - quiet.optimizer.state[q]["momentum_buffer"]
             for p, q in zip(noisy.hnet.shared_parameters(), quiet.hnet.shared_parameters(), strict=True)]  # fmt: skip
    # buffer after two steps: 0.9 b₁ + g₂; its noise part is 0.9 n₁ + n₂, std σC·sqrt(1.81) (Φ₁ differs too,
    # so g₂'s clipped part differs by at most 2·3·C: small against the noise over ~500 coordinates)
    flat = torch.cat([d.flatten() for d in diffs])
    measured = float(flat.std())

    assert flat.numel() > 400
    assert measured == pytest.approx(sigma * clip * math.sqrt(1.81), rel=0.1)


def test_the_noise_draws_have_std_sigma_times_c():
    noise = privacy.ClientClipping(mech(2.5, clip=0.4))

    (drawn,) = noise.noised([torch.zeros(200_000)])

    assert float(drawn.std()) == pytest.approx(1.0, rel=0.01) and abs(float(drawn.mean())) < 0.01


def test_the_shared_model_mean_clips_each_update_and_noises_the_sum():
    current = {"w": torch.zeros(4, 3), "b": torch.zeros(3)}
    models = [{"w": torch.full((4, 3), s), "b": torch.full((3,), s)} for s in (0.01, 1.0, -2.0)]
    norms = [math.sqrt(15) * abs(s) for s in (0.01, 1.0, -2.0)]

    exact = privacy.SharedClipping(mech(0.0, clip=math.inf, k=3)).private_mean(current, models)
    clipped = privacy.SharedClipping(mech(0.0, clip=1.0, k=3)).private_mean(current, models)
    noisy = privacy.SharedClipping(mech(4.0, clip=1.0, k=3))
    draws = torch.stack([noisy.private_mean(current, models)["w"] for _ in range(3000)])

    torch.testing.assert_close(exact["w"], torch.full((4, 3), (0.01 + 1.0 - 2.0) / 3))
    expected = sum(s * min(1.0, 1.0 / n) for s, n in zip((0.01, 1.0, -2.0), norms, strict=True)) / 3
    torch.testing.assert_close(clipped["b"], torch.full((3,), expected))
    assert float(draws.std(0).mean()) == pytest.approx(4.0 * 1.0 / 3, rel=0.05)


# --- the accountant in the checkpoint ---------------------------------------------------------


def test_the_accountant_round_trips_through_a_checkpoint_and_refuses_another_sigma(tmp_path):
    accountant = privacy.Accountant(mech(1.2))
    for _ in range(7):
        accountant.spend()
    checkpoint.save_checkpoint(tmp_path / "c.pt", {"round": 7, "privacy": accountant.state_dict()})

    restored = privacy.Accountant(mech(1.2))
    restored.load_state_dict(checkpoint.load_checkpoint(tmp_path / "c.pt")["privacy"])
    other = privacy.Accountant(mech(2.0))

    assert restored.rounds == 7 and restored.epsilon == accountant.epsilon == mech(1.2).epsilon(7)
    with pytest.raises(ValueError, match="another privacy.noise_multiplier"):
        other.load_state_dict(accountant.state_dict())


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_tampered_checkpoint_is_refused_with_one_line_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save_checkpoint(path, {"round": 3})
    state = torch.load(path, weights_only=True)
    with open(path, "wb") as fh:  # what an attacker who can write the run directory would leave there
        torch.save({**state, "strategy": Payload()}, fh)

    with pytest.raises(ValueError) as err:
        checkpoint.load_checkpoint(path)

    assert "refused" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "pwned").exists()
