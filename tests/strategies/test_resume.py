"""Checkpoints: a crashed run, resumed, ends exactly where an uninterrupted one does."""

import json

import pytest

from fedhyper import checkpoint, protocol
from strategies import experiment
from strategies.app import run
from strategies.loop import IdleRun, NoFinalEvaluation

RESUMABLE = ("sim.num_rounds=6", "sim.eval_every=2", "sim.checkpoint_every=2")


def test_resumed_run_equals_uninterrupted_run(in_process_grid, crashing_grid, tmp_path, tiny_config):
    def config():
        return tiny_config("pfedhn", *RESUMABLE)

    whole = run(in_process_grid(4), experiment.Experiment(config(), tmp_path / "whole", True))

    grid = crashing_grid(4, call=11)  # discovery, round-0 eval, then train/eval per round: 4 rounds done by call 10
    with pytest.raises(RuntimeError, match="the machine died"):
        run(grid, experiment.Experiment(config(), tmp_path / "split", True))
    before = checkpoint.load_checkpoint(tmp_path / "split" / checkpoint.FILENAME)
    assert before["round"] == 4

    # A new process would see new transport node ids; clients are matched by their ids.
    again = experiment.Experiment(config(), tmp_path / "split", True, resume=True)
    resumed_grid = in_process_grid(4, node_offset=5000)
    resumed = run(resumed_grid, again)

    # Rounds are absolute: the resumed run trains rounds 5 and 6, and tells its clients so.
    trained = [m for m in resumed_grid.sent if m.metadata.message_type == "train"]
    assert sorted({m.content[protocol.CONFIG][protocol.SERVER_ROUND] for m in trained}) == [5, 6]
    assert resumed.per_client_accuracy == whole.per_client_accuracy
    assert resumed.final_accuracy == whole.final_accuracy
    rows = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(7))
    whole_rows = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("train_loss") for r in rows] == [r.get("train_loss") for r in whole_rows]
    # CPU time counts the part before the crash too (what it had spent by its round-4 checkpoint, and more)
    assert before["reporter"]["cpu_s"] > 0 and resumed.cpu_time_s > before["reporter"]["cpu_s"]
    assert whole.cpu_time_s > 0


# kept: a head; a whole model; a head, and the server's shared model beside Φ (FedHyper's default); a head alone
@pytest.mark.parametrize(
    ("strategy", "options"),
    [("fedper", ()), ("ditto", ()), ("fedhyper", ()), ("fedhyper", ("strategy.shared_model=false",))],
)
def test_a_resumed_in_process_run_keeps_its_clients_private_parts(
    in_process_grid, crashing_grid, tmp_path, tiny_config, strategy, options
):
    def config():
        return tiny_config(strategy, *RESUMABLE, *options)

    whole = run(in_process_grid(4), experiment.Experiment(config(), tmp_path / "whole", True))
    with pytest.raises(RuntimeError, match="the machine died"):
        run(crashing_grid(4, call=11), experiment.Experiment(config(), tmp_path / "split", True))
    kept = checkpoint.load_checkpoint(tmp_path / "split" / checkpoint.FILENAME)["clients"]
    assert sorted(kept) == [0, 1, 2, 3] and any(kept.values())  # kept parts by client id, of those that trained

    resumed = run(
        in_process_grid(4, node_offset=5000), experiment.Experiment(config(), tmp_path / "split", True, resume=True)
    )

    assert resumed.per_client_accuracy == whole.per_client_accuracy


def test_a_checkpoint_without_clients_state_starts_them_afresh(
    in_process_grid, crashing_grid, tmp_path, tiny_config, caplog
):
    with pytest.raises(RuntimeError, match="the machine died"):
        run(crashing_grid(4, call=11), experiment.Experiment(tiny_config("fedper", *RESUMABLE), tmp_path, True))
    state = checkpoint.load_checkpoint(tmp_path / checkpoint.FILENAME)
    del state["clients"]  # as a Flower run's checkpoint: the server never holds its clients' state
    del state["reporter"]["cpu_s"]  # as a checkpoint written before CPU time was counted
    checkpoint.save_checkpoint(tmp_path / checkpoint.FILENAME, state)

    grid = in_process_grid(4, node_offset=5000)
    summary = run(grid, experiment.Experiment(tiny_config("fedper", *RESUMABLE), tmp_path, True, resume=True))

    assert "holds no clients state: it starts afresh" in caplog.text
    assert len(summary.per_client_accuracy) == 4
    assert summary.cpu_time_s is None  # the rounds before the checkpoint spent what it did not record
    trained = {m.metadata.dst_node_id for m in grid.sent if m.metadata.message_type == "train"}
    assert {n for n, c in grid.contexts.items() if c.state.array_records} == trained  # only rounds 5-6 kept a head


def test_a_resumed_run_counts_the_idle_rounds_before_its_checkpoint(
    in_process_grid, crashing_grid, tmp_path, tiny_config
):
    """Every client fails: a run stops at round 3 of sim.max_idle_rounds=3, also one resumed after round 2."""

    def config():
        return tiny_config("pfedhn", "sim.clients_per_round=4", "strategy.local.steps=2", "faults.kind=raise",
                           "faults.fraction=1.0", "sim.max_idle_rounds=3", *RESUMABLE)  # fmt: skip

    with pytest.raises(IdleRun, match="round 3: 3 training rounds in a row"):
        run(in_process_grid(4), experiment.Experiment(config(), tmp_path / "whole", True))
    with pytest.raises(RuntimeError, match="the machine died"):
        run(crashing_grid(4, call=6), experiment.Experiment(config(), tmp_path / "split", True))  # round 3's train
    loop_state = checkpoint.load_checkpoint(tmp_path / "split" / checkpoint.FILENAME)["loop"]
    assert loop_state == {"idle_rounds": 2, "idle_rejected": {"error": 8}}

    resumed = experiment.Experiment(config(), tmp_path / "split", True, resume=True)
    with pytest.raises(IdleRun, match="round 3: 3 training rounds in a row"):
        run(in_process_grid(4, node_offset=5000), resumed)
    idle = json.loads((tmp_path / "split" / "idle.json").read_text())
    assert idle["round"] == 3 and not idle["diverged"]  # its clients raised: a grid runs it again


def test_a_run_whose_final_evaluation_has_no_valid_reply_fails_and_resumes_into_it(
    in_process_grid, tmp_path, tiny_config
):
    """Not a summary with an earlier round's accuracy as the final one: an error, nothing of round 6 kept."""
    evaluations = iter(range(10**6))

    def lose_the_last_evaluation(reply):  # rounds 0, 2 and 4 evaluate 4 clients each; round 6's replies are lost
        lost = reply.metadata.message_type == "evaluate" and next(evaluations) >= 12
        return None if lost else reply

    run_dir = tmp_path / "run"
    grid = in_process_grid(4, on_reply=lose_the_last_evaluation)
    with pytest.raises(NoFinalEvaluation, match=r"round 6: none of the 4 clients .* timeout x4"):
        run(grid, experiment.Experiment(tiny_config("pfedhn", *RESUMABLE), run_dir, True))
    assert not (run_dir / "summary.json").exists()
    assert checkpoint.load_checkpoint(run_dir / checkpoint.FILENAME)["round"] == 4
    assert [json.loads(line)["round"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1] == 5

    again = experiment.Experiment(tiny_config("pfedhn", *RESUMABLE), run_dir, True, resume=True)
    resumed = run(in_process_grid(4, node_offset=5000), again)
    whole = run(in_process_grid(4), experiment.Experiment(tiny_config("pfedhn", *RESUMABLE), tmp_path / "whole", True))
    assert resumed.rounds == 6 and resumed.final_accuracy == whole.final_accuracy


def test_truncated_or_foreign_checkpoints_give_a_clear_error(tmp_path):
    good = tmp_path / "good.pt"
    checkpoint.save_checkpoint(good, {"round": 1})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:40])
    foreign = tmp_path / "foreign.pt"
    import torch

    torch.save({"model": 1}, foreign)

    assert checkpoint.load_checkpoint(good)["round"] == 1
    with pytest.raises(ValueError, match="truncated or not a checkpoint"):
        checkpoint.load_checkpoint(truncated)
    with pytest.raises(ValueError, match="not a fedhyper checkpoint"):
        checkpoint.load_checkpoint(foreign)
    with pytest.raises(ValueError, match="no checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "absent.pt")
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave nothing beside
