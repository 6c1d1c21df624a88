"""FedHyper: each ingredient does what it says, and each ablation option switches it off."""

import dataclasses
import logging
from unittest import mock

import pytest
import torch
from flwr.app import ConfigRecord, MessageType, RecordDict
from omegaconf import OmegaConf

from clients import app as client_app  # noqa: F401  (registers every client routine, FedHyper's adaptation included)
from clients import personal, runtime
from clients.personal import PLAIN, PRIVATE, Job
from fedhyper import protocol
from fedhyper.algorithms import ALGORITHMS
from fedhyper.config import ExperimentConfig
from fedhyper.hypernet import HyperNetConfig, HyperNetwork
from fedhyper.models import ModelConfig, build_model, initial_weights, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig
from fedhyper.training import LocalTrainConfig, evaluate, evaluate_ensemble
from strategies import experiment, fedhyper
from strategies.app import client_config, run
from strategies.directory import ClientDirectory
from strategies.exchange import RoundMetrics
from strategies.replies import Reply

HEAD = ("fc3.weight", "fc3.bias")  # the default CNN's last linear layer


def tiny(rounds: int = 2, **options) -> ExperimentConfig:
    """FedHyper on 4 clients; the generated model alone unless ``shared_model=True`` is asked."""
    options = {"shared_model": False, **options}
    cfg = ExperimentConfig(strategy=dataclasses.replace(fedhyper.FedHyperConfig(), **options))
    cfg.data.num_clients, cfg.data.subset, cfg.data.partition = 4, 1000, "pathological"
    cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every = rounds, 2, rounds
    cfg.strategy.local.steps = 5
    cfg.strategy.adapt_steps = options.get("adapt_steps", 3)
    return cfg


def arrays_in(message) -> set[str]:
    return {n for record in message.content.array_records.values() for n in record}


def test_the_private_head_never_reaches_the_server_and_each_client_keeps_its_own(in_process_grid, tmp_path):
    replies = []
    grid = in_process_grid(4, on_reply=lambda reply: replies.append(reply) or reply)

    run(grid, experiment.Experiment(tiny(), tmp_path, fixed_num_clients=True))

    train_replies = [r for r in replies if r.metadata.message_type == MessageType.TRAIN]
    assert train_replies and not any(set(HEAD) & arrays_in(r) for r in replies)
    assert not any(set(HEAD) & arrays_in(m) for m in grid.sent)
    kept = [protocol.record_to_weights(c.state.array_records[PRIVATE]) for c in grid.contexts.values()
            if PRIVATE in c.state.array_records]  # fmt: skip
    assert len(kept) >= 2 and all(set(k) == set(HEAD) for k in kept)
    assert not torch.equal(kept[0]["fc3.weight"], kept[1]["fc3.weight"])


def test_without_the_private_head_the_hypernetwork_generates_and_sends_the_head(loop_on):
    loop = loop_on(tiny(private_head=False))

    loop.train(1, RoundMetrics())

    assert set(HEAD) <= set(loop.strategy.trainer.hnet.target_shapes)
    sent = [m for m in loop.grid.sent if m.metadata.message_type == MessageType.TRAIN]
    assert sent and all(set(HEAD) <= arrays_in(m) for m in sent)
    assert not any(PRIVATE in c.state.array_records for c in loop.grid.contexts.values())


def test_with_the_private_head_the_hypernetwork_generates_the_body_only():
    strategy = fedhyper.build(tiny(), ClientDirectory())

    assert not set(HEAD) & set(strategy.trainer.hnet.target_shapes)
    assert "conv1.weight" in strategy.trainer.hnet.target_shapes


def client_job(adapt_steps: int) -> Job:
    """Client 0's evaluation job for FedHyper, sent the model's initial body."""
    cfg = tiny()
    config = ConfigRecord({**client_config(cfg), protocol.ALGORITHM: "fedhyper", protocol.ADAPT_STEPS: adapt_steps})
    data, input_shape, n_classes = runtime.client_data(config, 0)
    model = runtime.target_model(config, input_shape, n_classes, 0)
    body = {n: w.detach().clone() for n, w in model.named_parameters() if n not in HEAD}
    return Job(0, model, data, config, protocol.decode(LocalTrainConfig, protocol.LOCAL_PREFIX, config), body,
               RecordDict(), runtime.generator(config, 0), torch.device("cpu"), input_shape, n_classes)  # fmt: skip


def test_evaluation_adapts_on_the_training_split_and_reads_nothing_else():
    routine = ALGORITHMS.routine("fedhyper", PLAIN)
    plain, adapting = client_job(0), client_job(5)
    data, nan = adapting.data, float("nan")
    poisoned = dataclasses.replace(
        data, x_test=data.x_test.clone().fill_(nan), x_val=data.x_val.clone().fill_(nan),
        y_test=data.y_test.flip(0), y_val=data.y_val.flip(0),
    )  # fmt: skip
    blind = dataclasses.replace(adapting, data=poisoned)

    as_sent, adapted = routine.evaluation_weights(plain), routine.evaluation_weights(adapting)
    adapted_blind = routine.evaluation_weights(dataclasses.replace(blind, generator=runtime.generator(blind.config, 0)))

    assert all(torch.equal(as_sent[n], w) for n, w in plain.full().items())
    assert any(not torch.equal(adapted[n], as_sent[n]) for n in as_sent)
    assert all(torch.equal(adapted[n], adapted_blind[n]) for n in adapted)  # val and test splits unread
    assert evaluate(plain.model, adapted, data.x_test, data.y_test) != evaluate(
        plain.model, as_sent, data.x_test, data.y_test
    )


def test_a_round_whose_training_diverged_leaves_the_kept_head_as_it_was(caplog):
    job = client_job(0)
    PLAIN.train(job)
    kept = job.kept(PRIVATE)
    diverging = dataclasses.replace(job, local=dataclasses.replace(job.local, lr=1e30))

    with caplog.at_level(logging.WARNING, logger="fedhyper"):
        shared, _ = PLAIN.train(diverging)

    assert kept and set(kept) == set(HEAD)
    assert not all(torch.isfinite(w).all() for w in shared.values())  # the server rejects this reply
    assert all(torch.equal(job.kept(PRIVATE)[n], w) for n, w in kept.items())
    assert "not kept" in caplog.text


def test_the_server_tells_clients_its_adapt_steps_and_zero_evaluates_what_was_sent(loop_on):
    adapting, plain = loop_on(tiny(adapt_steps=4)), loop_on(tiny(adapt_steps=0))
    ids = [0, 1, 2, 3]
    sent = [loop.strategy.configure_evaluate(0, ids, None) for loop in (adapting, plain)]

    a, b = adapting.evaluate(0, ids, RoundMetrics()), plain.evaluate(0, ids, RoundMetrics())

    assert adapting.strategy.client_settings() == {protocol.ADAPT_STEPS: 4}
    for cid in ids:  # the same weights, evaluated with and without adaptation
        first, second = (protocol.record_to_weights(s[cid]) for s in sent)
        assert all(torch.equal(w, second[n]) for n, w in first.items())
    assert a["accuracy"] != b["accuracy"]


def test_init_defaults_to_hyperfan_in_and_the_ablation_restores_pytorchs():
    hyperfan = fedhyper.build(tiny(), ClientDirectory()).trainer
    default = fedhyper.build(tiny(init="default"), ClientDirectory()).trainer

    assert hyperfan.hnet.cfg.init == "hyperfan_in" and default.hnet.cfg.init == "default"
    ids = [0, 1]
    assert not torch.equal(hyperfan.generate(ids)["fc1.weight"], default.generate(ids)["fc1.weight"])


def test_embedding_dim_sets_the_embeddings_size_and_none_leaves_pfedhns():
    default = fedhyper.build(tiny(), ClientDirectory()).trainer.hnet
    sized = fedhyper.build(tiny(embedding_dim=16), ClientDirectory()).trainer.hnet
    pfedhn = fedhyper.build(tiny(embedding_dim=None), ClientDirectory()).trainer.hnet

    assert default.conditioner.table.weight.shape == (4, 64)  # the size the grid's tuning chose
    assert sized.conditioner.table.weight.shape == (4, 16)
    assert pfedhn.conditioner.table.weight.shape == (4, 2)  # 1 + 4 clients / 4


def test_init_none_takes_hnet_init_and_a_disagreeing_hnet_init_is_refused():
    cfg = tiny(init=None)
    cfg.hnet.init = "hyperfan_out"
    assert fedhyper.build(cfg, ClientDirectory()).trainer.hnet.cfg.init == "hyperfan_out"

    cfg.strategy.init = "hyperfan_in"
    with pytest.raises(ValueError, match="set strategy.init=hyperfan_out"):
        cfg.validate()


def test_strategy_base_sets_hnet_base_and_a_disagreeing_hnet_base_is_refused():
    based = fedhyper.build(tiny(base=True), ClientDirectory()).trainer
    plain = fedhyper.build(tiny(base=False), ClientDirectory()).trainer
    assert based.hnet.base is not None and based.base_optimizer is not None
    assert plain.hnet.base is None and plain.base_optimizer is None

    cfg = tiny(base=None)
    cfg.hnet.base = True
    assert fedhyper.build(cfg, ClientDirectory()).trainer.hnet.cfg.base
    cfg.strategy.base = False
    with pytest.raises(ValueError, match="strategy.base=False, not hnet.base=True"):
        cfg.validate()


def test_a_private_run_with_the_base_is_warned_of_its_cost(caplog):
    for base in (True, False):
        cfg = tiny(base=base, clients_per_step=0)
        cfg.privacy.noise_multiplier, cfg.privacy.clip = 1.0, 1.0
        with caplog.at_level(logging.WARNING, logger="fedhyper"):
            fedhyper.build(cfg, ClientDirectory())
    fedhyper.build(tiny(base=True), ClientDirectory())  # no privacy: nothing to say

    assert [r.getMessage() for r in caplog.records] == [fedhyper.PRIVATE_BASE_WARNING]


def test_a_private_run_stepping_per_client_is_warned_of_its_noise(caplog):
    for steps in (1, 0, 2):  # tiny's rounds have 2 clients: a step of 2 is the whole round
        cfg = tiny(base=False, clients_per_step=steps)
        cfg.privacy.noise_multiplier, cfg.privacy.clip = 1.0, 1.0
        with caplog.at_level(logging.WARNING, logger="fedhyper"):
            fedhyper.build(cfg, ClientDirectory())
    fedhyper.build(tiny(base=False), ClientDirectory())  # no privacy: nothing to say

    assert [r.getMessage() for r in caplog.records] == [fedhyper.private_steps_warning(1, 2)]
    assert "2 outer steps" in caplog.records[0].getMessage() and "1.4x" in caplog.records[0].getMessage()


def test_one_outer_step_per_client_is_the_default_and_runs_recorded_before_the_option_stepped_once_a_round(tmp_path):
    assert fedhyper.FedHyperConfig().clients_per_step == 1
    config = tmp_path / "config.yaml"
    written = OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(tiny())))
    del written.strategy["clients_per_step"]
    OmegaConf.save(written, config)

    assert experiment.typed(experiment.recorded(config)).strategy.clients_per_step == 0


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("adapt_steps", -1, "adapt_steps"),
        ("clients_per_step", -1, "clients_per_step"),
        ("init", "xavier", "init"),
        ("shared_adapt_steps", -1, "shared_adapt_steps"),
        ("shared_adapt_lr", 0.0, "shared_adapt_lr"),
        ("mutual_weight", -0.5, "mutual_weight"),
        ("ensemble_weight", 1.5, "ensemble_weight"),
    ],  # fmt: skip
)
def test_bad_options_name_themselves(option, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(fedhyper.FedHyperConfig(), **{option: value}).validate()


def test_clients_per_step_takes_one_outer_step_per_group(loop_on):
    whole, single = loop_on(tiny(clients_per_step=0)), loop_on(tiny())
    for t in (whole, single):
        t.strategy.trainer.optimizer.step = mock.Mock(wraps=t.strategy.trainer.optimizer.step)

    whole.train(1, RoundMetrics())
    single.train(1, RoundMetrics())

    assert [t.strategy.trainer.optimizer.step.call_count for t in (whole, single)] == [1, 2]


def test_phis_learning_rate_decays_over_the_runs_rounds_and_the_ablation_keeps_it(loop_on):
    constant = tiny(rounds=4)
    constant.strategy.outer = dataclasses.replace(constant.strategy.outer, schedule="constant")
    decaying, kept = loop_on(tiny(rounds=4)), loop_on(constant)

    decaying.train(3, RoundMetrics())  # round 3 of 4: half of the cosine's way down
    kept.train(3, RoundMetrics())

    lr = constant.strategy.outer.lr
    assert [g["lr"] for g in decaying.strategy.trainer.optimizer.param_groups] == pytest.approx([lr / 2, lr / 2])
    assert [g["lr"] for g in kept.strategy.trainer.optimizer.param_groups] == pytest.approx([lr, lr])


def sgd_without_momentum(cfg: ExperimentConfig) -> ExperimentConfig:
    cfg.strategy.outer = OuterConfig(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0)
    return cfg


def test_a_later_group_steps_on_its_clients_delta_from_what_they_were_sent():
    """Client 1 returns what it was sent (Δ = 0): its step, after client 0's moved Φ, must not move Φ."""
    grouped = fedhyper.build(sgd_without_momentum(tiny(clients_per_step=1)), ClientDirectory())
    alone = fedhyper.build(sgd_without_momentum(tiny()), ClientDirectory())
    plan = grouped.configure_train(1, [0, 1], None)
    sent = {c: protocol.record_to_weights(plan.sent[c]) for c in (0, 1)}
    moved = {n: w + 0.01 for n, w in sent[0].items()}
    metrics = {protocol.NUM_EXAMPLES: 10, protocol.TRAIN_LOSS: 1.0}
    replies = {0: Reply(RecordDict(), metrics, moved), 1: Reply(RecordDict(), metrics, sent[1])}

    base = grouped.trainer.hnet.base_parameters()[0].detach().clone()
    grouped.aggregate_train(1, plan, replies, None)
    alone.trainer.step([0], {n: w.unsqueeze(0) for n, w in moved.items()}, [10])

    grouped_base, alone_base = grouped.trainer.hnet.base_parameters()[0], alone.trainer.hnet.base_parameters()[0]
    for p, q in zip(grouped.trainer.hnet.parameters(), alone.trainer.hnet.parameters(), strict=True):
        if p is not grouped_base:
            torch.testing.assert_close(p, q)
    # the base moves by the round's mean Δ, (0.01 + 0) / 2, where client 0 alone moves it by its own 0.01
    torch.testing.assert_close(grouped_base - base, (alone_base - base) / 2)


def test_a_rounds_groups_move_the_base_by_its_mean_delta_once_and_weigh_clients_as_the_round_does():
    grouped = fedhyper.build(sgd_without_momentum(tiny(clients_per_step=1)), ClientDirectory())
    whole = fedhyper.build(sgd_without_momentum(tiny(clients_per_step=0)), ClientDirectory())
    plan = grouped.configure_train(1, [0, 1], None)
    whole_plan = whole.configure_train(1, [0, 1], None)
    sent = {c: protocol.record_to_weights(plan.sent[c]) for c in (0, 1)}
    counts = {0: 5, 1: 500}
    replies = {
        c: Reply(RecordDict(), {protocol.NUM_EXAMPLES: counts[c], protocol.TRAIN_LOSS: 1.0},
                 {n: w + 0.01 for n, w in sent[c].items()})
        for c in (0, 1)
    }  # fmt: skip
    before = grouped.trainer.hnet.base_parameters()[0].detach().clone()
    grouped.trainer.step = mock.Mock(wraps=grouped.trainer.step)

    grouped.aggregate_train(1, plan, replies, None)
    whole.aggregate_train(1, whole_plan, replies, None)

    # each client weighs as in the whole round's step (examples, "sum": 2 · n_i / Σn), not 1 as its group's only one
    round_weights = grouped.trainer.client_weights([5, 500])
    passed = [call.args[5] for call in grouped.trainer.step.call_args_list]
    torch.testing.assert_close(torch.cat(passed), round_weights)
    assert {call.kwargs["round_weight"] for call in grouped.trainer.step.call_args_list} == {2.0}
    # two groups, one base step's distance: the round's weighted mean Δ (0.01 everywhere), as the whole round moves it
    after, whole_base = grouped.trainer.hnet.base_parameters()[0], whole.trainer.hnet.base_parameters()[0]
    torch.testing.assert_close(after - before, whole_base - before)
    torch.testing.assert_close(after - before, torch.full_like(before, 0.01))


def test_sgd_outer_optimizer_is_todays_sgd_bit_for_bit_and_adam_differs():
    shapes = target_shapes(build_model(ModelConfig(name="mlp", hidden=8), (1, 4, 4), 3))
    ids = [0, 3, 6]

    def stepped(cfg: OuterConfig, hand_built_sgd: bool = False) -> dict[str, torch.Tensor]:
        torch.manual_seed(5)
        trainer = HyperNetTrainer(HyperNetwork(shapes, 7, HyperNetConfig(hidden_dim=16, n_hidden=2)), cfg)
        if hand_built_sgd:  # what outer_optimizer built before the option existed
            groups = [{"params": trainer.hnet.shared_parameters()},
                      {"params": trainer.hnet.embedding_parameters(), "weight_decay": 0.0, "lr": cfg.lr}]  # fmt: skip
            trainer.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        for _ in range(2):
            generated = trainer.generate(ids)
            trainer.step(ids, {n: w + 0.01 for n, w in generated.items()}, [3, 5, 7])
        return dict(trainer.hnet.named_parameters())

    before, sgd = stepped(OuterConfig(), hand_built_sgd=True), stepped(OuterConfig(optimizer="sgd"))
    adam = stepped(OuterConfig(optimizer="adam", lr=1e-3))

    assert all(torch.equal(before[n], sgd[n]) for n in before)
    assert any(not torch.allclose(before[n], adam[n]) for n in before)


def test_adams_first_step_moves_each_parameter_by_its_learning_rate():
    shapes = target_shapes(build_model(ModelConfig(name="mlp", hidden=8), (1, 4, 4), 3))
    trainer = HyperNetTrainer(HyperNetwork(shapes, 7, HyperNetConfig(hidden_dim=16, n_hidden=2)),
                              OuterConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, grad_clip=0.0))  # fmt: skip
    start = [p.detach().clone() for p in trainer.hnet.shared_parameters()]
    generated = trainer.generate([1, 2])

    trainer.step([1, 2], {n: w + 0.05 for n, w in generated.items()}, [4, 4])

    after = trainer.hnet.shared_parameters()
    moves = torch.cat([(p.detach() - s).abs().flatten() for p, s in zip(after, start, strict=True)])
    moved = moves[moves > 0]
    assert len(moved) > 0.9 * len(moves)
    torch.testing.assert_close(moved, torch.full_like(moved, 1e-3), rtol=1e-2, atol=0)  # |g / (|g| + eps)| lr


def test_an_unknown_outer_optimizer_is_refused():
    with pytest.raises(ValueError, match="strategy.outer.optimizer"):
        OuterConfig(optimizer="rmsprop").validate()


def test_with_a_shared_model_clients_train_both_on_half_their_steps_and_the_server_steps_each(loop_on):
    replies = []
    loop = loop_on(tiny(shared_model=True), on_reply=lambda reply: replies.append(reply) or reply)
    before = {n: w.clone() for n, w in loop.strategy.shared.weights.items()}
    phi = [p.detach().clone() for p in loop.strategy.trainer.hnet.parameters()]

    with mock.patch("clients.personal.train_local", wraps=personal.train_local) as trained:
        loop.train(1, RoundMetrics())

    assert [call.args[4].steps for call in trained.call_args_list] == [3, 2, 3, 2]  # 5 local steps: 3 + 2, two clients
    sent = [m for m in loop.grid.sent if m.metadata.message_type == MessageType.TRAIN]
    members = [protocol.unpack_members(protocol.record_to_weights(m.content.array_records[protocol.ARRAYS]))
               for m in sent]  # fmt: skip
    assert all(len(m) == 2 and not set(HEAD) & set(m[0]) and set(HEAD) <= set(m[1]) for m in members)
    back = [(protocol.unpack_members(protocol.record_to_weights(r.content.array_records[protocol.ARRAYS]))[1],
             int(r.content.metric_records[protocol.METRICS][protocol.NUM_EXAMPLES]))
            for r in replies if r.metadata.message_type == MessageType.TRAIN]  # fmt: skip
    total = sum(n for _, n in back)
    for name, w in loop.strategy.shared.weights.items():  # FedAvg's step: the example-weighted mean of the copies
        torch.testing.assert_close(w, sum(weights[name] * n / total for weights, n in back))
        assert not torch.equal(w, before[name]) or name in HEAD
    assert any(not torch.equal(p, q) for p, q in zip(loop.strategy.trainer.hnet.parameters(), phi, strict=True))


def test_with_a_mutual_weight_the_two_models_train_side_by_side_and_the_head_is_kept(loop_on):
    from fedhyper import training

    replies = []
    loop = loop_on(tiny(shared_model=True, mutual_weight=1.5), on_reply=lambda reply: replies.append(reply) or reply)

    with mock.patch("clients.fedhyper.train_mutual", wraps=training.train_mutual) as mutual:
        loop.train(1, RoundMetrics())

    assert [(call.args[6], call.args[7]) for call in mutual.call_args_list] == [([3, 2], 1.5)] * 2  # two clients
    generated, shared = mutual.call_args_list[0].args[1]
    assert set(HEAD) <= set(generated) and set(HEAD) <= set(shared)  # the kept head under the generated body
    back = [protocol.unpack_members(protocol.record_to_weights(r.content.array_records[protocol.ARRAYS]))
            for r in replies if r.metadata.message_type == MessageType.TRAIN]  # fmt: skip
    assert all(not set(HEAD) & set(m[0]) and set(HEAD) <= set(m[1]) for m in back)  # the head never leaves
    kept = [protocol.record_to_weights(c.state.array_records[PRIVATE]) for c in loop.grid.contexts.values()
            if PRIVATE in c.state.array_records]  # fmt: skip
    assert len(kept) == 2 and all(not torch.equal(k["fc3.weight"], generated["fc3.weight"]) for k in kept)
    with pytest.raises(ValueError, match="needs strategy.shared_model=true"):
        dataclasses.replace(fedhyper.FedHyperConfig(), shared_model=False, mutual_weight=1.0).validate()


@pytest.mark.parametrize("weight", [0.5, 0.3])
def test_with_a_shared_model_a_client_is_evaluated_on_the_two_models_averaged_prediction(loop_on, weight):
    cfg = tiny(shared_model=True, adapt_steps=0, shared_adapt_steps=0, ensemble_weight=weight)
    loop = loop_on(cfg)
    generated, shared = protocol.unpack_members(
        protocol.record_to_weights(loop.strategy.configure_evaluate(0, [0], None)[0])
    )

    reported = loop.evaluate(0, [0], RoundMetrics())

    config = ConfigRecord({**client_config(cfg), protocol.ALGORITHM: "fedhyper"})
    data, input_shape, n_classes = runtime.client_data(config, 0)
    model = runtime.target_model(config, input_shape, n_classes, 0)
    own = {**initial_weights(cfg.model, input_shape, n_classes, cfg.seed), **generated}  # the head: its first one
    expected = evaluate_ensemble(model, [own, shared], data.x_test, data.y_test, [weight, 1 - weight])
    assert reported["accuracy"] == pytest.approx(expected["accuracy"])
    assert reported["eval_loss"] == pytest.approx(expected["loss"])
    assert reported["eval_loss"] != pytest.approx(evaluate(model, own, data.x_test, data.y_test)[0])
    if weight != 0.5:  # the weight acts: the plain mean gives another loss
        equal = evaluate_ensemble(model, [own, shared], data.x_test, data.y_test)
        assert reported["eval_loss"] != pytest.approx(equal["loss"])


@pytest.mark.parametrize(("steps", "lr"), [(7, 0.01), (None, None)])
def test_the_shared_model_is_fine_tuned_with_its_own_steps_and_rate_the_generated_one_adapted(loop_on, steps, lr):
    cfg = tiny(shared_model=True, adapt_steps=2, shared_adapt_steps=steps, shared_adapt_lr=lr)
    loop = loop_on(cfg)
    generated, shared = protocol.unpack_members(
        protocol.record_to_weights(loop.strategy.configure_evaluate(0, [0], None)[0])
    )

    with mock.patch("clients.fedavg_ft.train_local", wraps=personal.train_local) as trained:
        loop.evaluate(0, [0], RoundMetrics())

    adapted, tuned = trained.call_args_list  # the generated model first
    assert (adapted.kwargs["steps"], adapted.args[4].lr) == (2, cfg.strategy.local.lr)
    # None: the generated model's adaptation (what every run did before the options)
    assert (tuned.kwargs["steps"], tuned.args[4].lr) == (steps or 2, lr or cfg.strategy.local.lr)
    assert all(torch.equal(tuned.args[1][n], w) for n, w in shared.items())  # the shared model as sent, whole
    assert all(torch.equal(adapted.args[1][n], w) for n, w in generated.items())


def test_a_shared_model_refuses_privacy_and_the_generated_model_alone_takes_it(tiny_config):
    with pytest.raises(ValueError, match="privacy"):
        tiny_config("fedhyper", "strategy.shared_model=true", "privacy.noise_multiplier=1.0").validate()
    tiny_config("fedhyper", "strategy.shared_model=false", "privacy.noise_multiplier=1.0").validate()


@pytest.mark.parametrize("shared_model", ["true", "false"])
@pytest.mark.parametrize("hnet_input", ["noise", "data"])
def test_fedhyper_refuses_inputs_other_than_embeddings(tiny_config, shared_model, hnet_input):
    """Its clients adapt one generated model: pFedHN's ensemble of noise draws would fail every evaluation."""
    with pytest.raises(ValueError, match=f"not hnet.input={hnet_input}: use strategy=pfedhn for hnet.input=noise"):
        tiny_config("fedhyper", f"strategy.shared_model={shared_model}", f"hnet.input={hnet_input}").validate()


def test_the_novel_clients_rounds_decay_the_local_lr_over_their_own_phase(loop_on):
    cfg = tiny(rounds=4)
    cfg.novel_clients, cfg.sim.novel_rounds, cfg.sim.clients_per_round = 1, 2, 2
    loop = loop_on(cfg)

    def lr(server_round: int) -> float:
        return float(loop.exchange(server_round, MessageType.TRAIN, RoundMetrics()).config[protocol.LOCAL_LR])

    base = cfg.strategy.local.lr  # FedHyper's local rate decays on a cosine over the 4 training rounds
    assert lr(1) == pytest.approx(base) and lr(3) == pytest.approx(base / 2) and lr(4) < base / 5
    assert [lr(5), lr(6)] == pytest.approx([base, base / 2])  # the novel clients' 2 rounds: from local.lr again


def test_novel_clients_embeddings_step_with_the_outer_optimisers_kind_and_rate():
    adam, sgd = tiny(), sgd_without_momentum(tiny())
    kinds = {}
    for name, cfg in (("adam", adam), ("sgd", sgd)):
        trainer = fedhyper.build(cfg, ClientDirectory()).trainer
        generated = trainer.generate([3])
        trainer.fit_embeddings([3], {n: w + 0.01 for n, w in generated.items()}, [10])
        kinds[name] = (type(trainer.embedding_optimizer).__name__, trainer.embedding_optimizer.param_groups[0]["lr"])

    assert kinds == {"adam": ("Adam", adam.strategy.outer.lr), "sgd": ("SGD", sgd.strategy.outer.lr)}
