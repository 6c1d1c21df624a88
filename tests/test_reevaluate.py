"""scripts/reevaluate.py: a finished run's last checkpoint evaluated again under other evaluation settings."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import reevaluate  # noqa: E402

from fedhyper import checkpoint  # noqa: E402
from strategies import experiment  # noqa: E402
from strategies.app import run  # noqa: E402


def finished_run(in_process_grid, tiny_config, run_dir: Path, strategy: str, *overrides: str):
    cfg = tiny_config(strategy, "sim.num_rounds=3", "sim.eval_every=3", "sim.checkpoint_every=3", *overrides)
    return run(in_process_grid(4), experiment.Experiment(cfg, run_dir, True))


@pytest.mark.parametrize(
    ("strategy", "run_options", "own", "other"),
    [
        ("fedhyper", ["strategy.adapt_steps=3"], "strategy.adapt_steps=3", "strategy.adapt_steps=0"),
        # one client a round: some never trained, the others' θ is as old as their sampling; personalised at
        # evaluation, each runs a seeded local round from the received model instead
        (
            "pfedme",
            ["sim.clients_per_round=1"],
            "strategy.personalize_at_eval=false",
            "strategy.personalize_at_eval=true",
        ),
    ],
)
def test_the_runs_own_settings_give_its_recorded_accuracies_and_other_settings_other_ones(
    in_process_grid, tiny_config, tmp_path, strategy, run_options, own, other
):
    summary = finished_run(in_process_grid, tiny_config, tmp_path, strategy, *run_options)
    saved = (tmp_path / checkpoint.FILENAME).read_bytes()

    again = reevaluate.evaluate(tmp_path, [own])
    changed = reevaluate.evaluate(tmp_path, [other])

    # the clients' kept state (private heads, personal models) came back from the checkpoint: the same
    # settings give the same figures
    assert again["accuracy"] == summary.final_accuracy
    assert again["accuracy_pooled"] == summary.final_accuracy_pooled
    assert again["eval_clients"] == 4 and again["round"] == 3
    assert changed["val_accuracy"] != again["val_accuracy"] or changed["eval_loss"] != again["eval_loss"]
    assert reevaluate.evaluate(tmp_path, [other]) == changed  # repeated alike
    assert (tmp_path / checkpoint.FILENAME).read_bytes() == saved  # nothing trained, nothing written


def test_the_command_prints_one_row_per_value(in_process_grid, tiny_config, tmp_path, capsys):
    summary = finished_run(in_process_grid, tiny_config, tmp_path, "fedavg_ft", "strategy.finetune_steps=2")

    reevaluate.main([str(tmp_path), "strategy.finetune_steps=0,2"])

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{tmp_path}: recorded at round 3: {100 * summary.final_accuracy:.2f}")
    assert lines[0].endswith("the checkpoint of round 3")
    assert [line.split(" | ")[0] for line in lines[3:]] == ["| 0", "| 2"]
    assert lines[4].split(" | ")[1] == f"{100 * summary.final_accuracy:.2f}"


def test_several_options_give_one_row_per_combination(in_process_grid, tiny_config, tmp_path, capsys):
    finished_run(in_process_grid, tiny_config, tmp_path, "fedavg_ft", "strategy.finetune_steps=2")

    reevaluate.main([str(tmp_path), "strategy.finetune_steps=0,2", "strategy.local.lr=0.01,0.05"])

    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("| strategy.finetune_steps | strategy.local.lr | mean over clients")
    assert [line.split(" | ")[:2] for line in lines[3:]] == [
        ["| 0", "0.01"],
        ["| 0", "0.05"],
        ["| 2", "0.01"],
        ["| 2", "0.05"],
    ]
    no_steps = {line.split(" | ")[2] for line in lines[3:5]}
    assert len(no_steps) == 1  # without fine-tuning its rate changes nothing


def test_settle_chooses_nothing_it_cannot_evaluate_and_says_why(in_process_grid, tiny_config, tmp_path):
    from simulations.reevaluation import settle

    finished_run(in_process_grid, tiny_config, tmp_path, "fedavg_ft")
    space = {"strategy.finetune_steps": (0, 2)}
    saved = (tmp_path / checkpoint.FILENAME).read_bytes()

    no_seed_0 = settle(space, [(1, tmp_path)])
    summary = tmp_path / "summary.json"
    recorded = summary.read_text()
    summary.write_text(json.dumps({**json.loads(recorded), "rounds": 4}))  # a checkpoint older than the last round
    not_last = settle(space, [(0, tmp_path)])
    summary.write_text(recorded)
    (tmp_path / checkpoint.FILENAME).unlink()
    none_kept = settle(space, [(0, tmp_path)])

    assert no_seed_0.chosen is None and no_seed_0.missing == ["no finished seed-0 run to choose on"]
    assert not_last.chosen is None and "its checkpoint is of round 3, not its last (4)" in not_last.missing[0]
    assert none_kept.chosen is None and "no checkpoint to evaluate it on" in none_kept.missing[0]
    # running the run again gives the final checkpoint both lack; without a seed-0 run, nothing would
    assert not_last.rerun == none_kept.rerun == [tmp_path] and no_seed_0.rerun == []
    assert settle(space, [(0, tmp_path)], compute=False).rerun == []  # reading kept evaluations asks for no run
    (tmp_path / checkpoint.FILENAME).write_bytes(saved)
    done = settle(space, [(0, tmp_path)])
    assert done.chosen in ({"strategy.finetune_steps": 0}, {"strategy.finetune_steps": 2}) and done.missing == []
    assert done.rerun == []
    assert [v for v, _ in done.validation] == [{"strategy.finetune_steps": 0}, {"strategy.finetune_steps": 2}]


def test_candidates_that_evaluate_alike_are_evaluated_once_as_the_first_of_them(tiny_config, tmp_path):
    from omegaconf import OmegaConf

    from fedhyper.search import candidates
    from simulations.reevaluation import distinct
    from strategies.fedhyper import FedHyperConfig

    def kept(strategy: str, space: dict, *overrides: str) -> list[dict]:
        OmegaConf.save(OmegaConf.structured(tiny_config(strategy, *overrides)), tmp_path / "config.yaml")
        return distinct(candidates(space), tmp_path)

    steps, rate = "strategy.shared_adapt_steps", "strategy.shared_adapt_lr"
    full = kept("fedhyper", FedHyperConfig.eval_space)
    zero_steps = [c for c in full if c[steps] == 0]
    # 7 steps × 5 rates: the 5 rates of 0 steps are one evaluation, kept as the first
    assert len(full) == 31 and zero_steps == [{steps: 0, rate: None}]
    assert kept("fedhyper", {rate: (None, 0.01)}, f"{steps}=0") == [{rate: None}]  # fedhyper-no-adapt's space
    assert kept("fedhyper", {rate: (None, 0.01)}, f"{steps}=3") == [{rate: None}, {rate: 0.01}]
    # without the shared model its fine-tuning acts on nothing; the generated model's adaptation still counts
    alone = {"strategy.adapt_steps": (0, 2), rate: (None, 0.01)}
    assert kept("fedhyper", alone, "strategy.shared_model=false") == [
        {"strategy.adapt_steps": 0, rate: None},
        {"strategy.adapt_steps": 2, rate: None},
    ]
    # FedAvg-FT: no rate without steps, and None is the local rate
    ft = {"strategy.finetune_steps": (0, 2), "strategy.finetune_lr": (None, 0.01, 0.03)}
    assert kept("fedavg_ft", ft, "strategy.local.lr=0.03") == [
        {"strategy.finetune_steps": 0, "strategy.finetune_lr": None},
        {"strategy.finetune_steps": 2, "strategy.finetune_lr": None},
        {"strategy.finetune_steps": 2, "strategy.finetune_lr": 0.01},
    ]
    # a strategy that does not say what its evaluation depends on has every candidate evaluated
    assert len(kept("perfedavg", {"strategy.adapt_steps": (1, 2, 3)})) == 3


def test_settle_evaluates_at_a_runs_last_round_with_its_novel_clients_rounds(in_process_grid, tiny_config, tmp_path):
    from simulations.reevaluation import settle

    summary = finished_run(
        in_process_grid, tiny_config, tmp_path, "fedhyper", "novel_clients=1", "sim.novel_rounds=2",
        "strategy.shared_model=false",
    )  # fmt: skip
    space = {"strategy.adapt_steps": (0, 3)}

    done = settle(space, [(0, tmp_path)])

    assert summary.rounds == 5 and done.missing == [], done.missing  # 3 training rounds, then the novel client's 2
    assert done.by_seed[0]["round"] == 5


def test_a_checkpoint_without_the_clients_kept_state_is_not_evaluated_and_says_why(
    in_process_grid, tiny_config, tmp_path
):
    from simulations.reevaluation import CACHE_FILE, settle

    finished_run(in_process_grid, tiny_config, tmp_path, "fedavg_ft")
    state = checkpoint.load_checkpoint(tmp_path / checkpoint.FILENAME)
    del state["clients"]  # as a Flower run writes it: its clients keep their state on their nodes
    checkpoint.save_checkpoint(tmp_path / checkpoint.FILENAME, state)

    flower_like = settle({"strategy.finetune_steps": (0, 2)}, [(0, tmp_path)])

    assert flower_like.chosen is None
    assert "could not be evaluated" in flower_like.missing[0] and "holds no clients state" in flower_like.missing[0]
    assert not (tmp_path / CACHE_FILE).exists()  # nothing kept that was not evaluated


def test_options_a_run_evaluated_with_are_its_recorded_evaluation_and_need_no_checkpoint(
    in_process_grid, tiny_config, tmp_path
):
    from simulations.reevaluation import CACHE_FILE, settle

    summary = finished_run(in_process_grid, tiny_config, tmp_path, "fedhyper", "strategy.shared_adapt_steps=0")
    (tmp_path / checkpoint.FILENAME).unlink()
    rate = "strategy.shared_adapt_lr"

    # fedhyper-no-adapt's space: without steps every rate evaluates as the run did
    alike = settle({rate: (None, 0.01)}, [(0, tmp_path)])
    other = settle({"strategy.shared_adapt_steps": (0, 2)}, [(0, tmp_path)])

    assert alike.missing == [] and alike.chosen == {rate: None}
    assert alike.by_seed[0]["accuracy"] == summary.final_accuracy and alike.by_seed[0]["round"] == 3
    assert alike.validation == [({rate: None}, summary.val_accuracy)]
    assert other.chosen is None and "no checkpoint to evaluate it on" in other.missing[0]
    assert "'strategy.shared_adapt_steps': 2" in other.missing[0]  # 0 steps, as the run had, was read
    assert alike.rerun == [] and other.rerun == [tmp_path]
    assert not (tmp_path / CACHE_FILE).exists()


def test_a_run_whose_recorded_config_is_refused_now_is_not_evaluated_and_says_why(
    in_process_grid, tiny_config, tmp_path
):
    from omegaconf import OmegaConf

    from simulations.reevaluation import settle

    finished_run(in_process_grid, tiny_config, tmp_path, "fedhyper", "strategy.shared_model=false")
    config = tmp_path / "config.yaml"
    raw = OmegaConf.load(config)
    raw.hnet.input = "noise"  # as a run recorded before strategy=fedhyper refused noise inputs
    OmegaConf.save(raw, config)

    refused = settle({"strategy.adapt_steps": (0, 2)}, [(0, tmp_path)])

    assert refused.chosen is None
    assert "its recorded config is refused now" in refused.missing[0] and "hnet.input=noise" in refused.missing[0]


def test_a_later_stage_is_chosen_with_the_earlier_choice_fixed_reading_what_acts_alike(
    in_process_grid, tiny_config, tmp_path
):
    from simulations.reevaluation import CACHE_FILE, settle

    finished_run(in_process_grid, tiny_config, tmp_path, "fedhyper", "strategy.shared_adapt_steps=0",
                 "strategy.adapt_steps=3")  # fmt: skip
    steps, weight = "strategy.shared_adapt_steps", "strategy.ensemble_weight"

    done = settle([{steps: (0, 2)}, {weight: (0.5, 0.0)}], [(0, tmp_path)])

    first = max(done.validation[:2], key=lambda c: c[1])[0]  # the first stage's choice
    assert [v for v, _ in done.validation] == [{steps: 0}, {steps: 2}, {**first, weight: 0.5}, {**first, weight: 0.0}]
    assert done.validation[2][1] == max(acc for _, acc in done.validation[:2])  # weight 0.5: the choice, read again
    assert done.chosen == max(done.validation[2:], key=lambda c: c[1])[0] and done.missing == []
    kept = [json.loads(line)["options"] for line in (tmp_path / CACHE_FILE).read_text().splitlines()]
    # 0 steps at weight 0.5 is the run's own evaluation; each other candidate evaluated once
    assert kept == [{steps: 2}, {**first, weight: 0.0}]
    assert done.validation[3][1] != done.validation[2][1]  # the weight acts (0: the shared model alone)
