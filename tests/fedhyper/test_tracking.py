"""fedhyper.tracking without a backend: which steps reach a tracker, what a failure costs, the grid's options."""

import logging
from pathlib import Path

import pytest

from fedhyper import tracking
from fedhyper.tracking import RunTracking, TrackingConfig


class Recorder:
    """A tracker that keeps what it is given; it lacks every step from ``lacks`` on."""

    def __init__(self, lacks: int = 0, fail_at: int | None = None) -> None:
        self.lacks, self.fail_at = lacks, fail_at
        self.started: list[tuple] = []
        self.steps: list[int] = []
        self.summary: dict[str, float] = {}
        self.files: list[Path] = []
        self.closed = False

    def start(self, params, tags, resume_step):
        self.started.append((params, tags, resume_step))
        return min(self.lacks, resume_step)

    def log_metrics(self, step, metrics):
        if step == self.fail_at:
            raise ConnectionError("the server went away\nwith a long traceback")
        self.steps.append(step)

    def log_summary(self, metrics):
        self.summary = metrics

    def log_artifacts(self, paths):
        self.files = paths

    def close(self, failed=False):
        self.closed = "failed" if failed else "finished"


def rows(*rounds: int) -> list[dict]:
    return [{"round": r, "elapsed_s": 0.5 * r, "accuracy": r / 10} for r in rounds]


def feed(run: RunTracking, history: list[dict], first: int) -> None:
    """What the reporter does: a resumed record holds the rows up to ``first`` before it records again."""
    for i in range(first, len(history)):
        run.record(history[: i + 1])


def test_a_new_run_starts_its_tracker_at_round_0_and_logs_every_round(tmp_path):
    recorder = Recorder()
    run = RunTracking(recorder, {"sim.num_rounds": "3"}, {"strategy": "pfedhn", "seed": "0"}, tmp_path)

    feed(run, rows(0, 1, 2, 3), first=0)
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "embeddings.png").write_bytes(b"")
    run.finish({"final_accuracy": 0.3, "per_client_accuracy": [0.2, 0.4], "strategy": "pfedhn"})

    assert recorder.started == [({"sim.num_rounds": "3"}, {"strategy": "pfedhn", "seed": "0"}, 0)]
    assert recorder.steps == [0, 1, 2, 3]
    assert recorder.summary == {"summary/final_accuracy": 0.3}
    assert [p.name for p in recorder.files] == ["summary.json", "embeddings.png"]
    assert recorder.closed == "finished"


@pytest.mark.parametrize(("lacks", "expected"), [(5, [5, 6]), (3, [3, 4, 5, 6]), (0, [0, 1, 2, 3, 4, 5, 6])])
def test_a_resumed_run_logs_exactly_the_steps_its_tracker_lacks(tmp_path, lacks, expected):
    # The checkpoint holds rounds 0..4; the run goes on from round 5. The tracker may hold all of
    # them (5), lack some (3: the tracker was down), or none (0: tracking was switched on at resume).
    recorder = Recorder(lacks=lacks)
    run = RunTracking(recorder, {}, {"strategy": "fedavg", "seed": "1"}, tmp_path)

    feed(run, rows(*range(7)), first=5)

    assert recorder.started[0][2] == 5
    assert recorder.steps == expected


def test_a_failing_tracker_is_one_warning_and_the_record_goes_on(tmp_path, caplog):
    recorder = Recorder(fail_at=1)
    run = RunTracking(recorder, {}, {"strategy": "fedavg", "seed": "0"}, tmp_path)

    with caplog.at_level(logging.WARNING, logger="fedhyper"):
        feed(run, rows(0, 1, 2, 3), first=0)
        run.finish({"final_accuracy": 0.3})

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["tracking failed, the run goes on without it: the server went away"]
    assert recorder.steps == [0] and recorder.summary == {} and not recorder.closed


def test_a_run_that_fails_closes_its_started_tracker_as_failed_once(tmp_path):
    before_any_row, recorder = Recorder(), Recorder()
    RunTracking(before_any_row, {}, {}, tmp_path).fail()  # failed before round 0: nothing was opened
    run = RunTracking(recorder, {}, {"strategy": "fedavg", "seed": "0"}, tmp_path)
    feed(run, rows(0, 1), first=0)

    run.fail()
    run.finish({"final_accuracy": 0.3})  # too late: the tracker is closed

    assert before_any_row.started == [] and not before_any_row.closed
    assert recorder.closed == "failed" and recorder.summary == {} and recorder.files == []


def test_tracking_off_reaches_no_tracker(tmp_path):
    tracking.OFF.record(rows(0))
    tracking.OFF.finish({"final_accuracy": 0.1})
    tracking.OFF.fail()
    assert tracking.OFF.tracker is None and not tracking.OFF.started


def test_summary_metrics_are_its_numbers_with_nested_ones_dotted():
    summary = {
        "strategy": "pfedhn",
        "rounds": 4,
        "final_accuracy": 0.5,
        "best_round": None,
        "per_client_accuracy": [0.1, 0.9],
        "seconds_to_accuracy": {"0.90": 12.5, "0.95": None},
        "rejected_replies": {"nan": 2},
        "novel_clients": [3],
        "machine": {"cpu": "a CPU", "cores": 2, "gpu": None},  # what ran it: in the summary file, not a metric
    }

    assert tracking.summary_metrics(summary) == {
        "summary/rounds": 4.0,
        "summary/final_accuracy": 0.5,
        "summary/seconds_to_accuracy.0.90": 12.5,
        "summary/rejected_replies.nan": 2.0,
    }


def test_round_metrics_are_a_rows_numbers_without_the_step():
    row = {"round": 3, "elapsed_s": 1.5, "accuracy": 0.25, "ok": True, "note": "x"}
    assert tracking.round_metrics(row) == {"elapsed_s": 1.5, "accuracy": 0.25}


def test_an_unknown_backend_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="tracking.backend='wandb' is unknown; choose tracking=none or tracking="):
        TrackingConfig(backend="wandb").validate()


def test_a_grid_shares_one_store_and_experiment_and_tags_each_cell(tmp_path):
    out = tmp_path / "my-grid"

    overrides = tracking.grid_overrides(TrackingConfig(backend="mlflow"), out, "dirichlet", "base")

    assert overrides == [
        f"tracking.uri='sqlite:///{out.resolve()}/mlflow.db'",
        "tracking.experiment='my-grid'",
        "++tracking.tags.setting=dirichlet",
        "++tracking.tags.variant=base",
    ]
    given = TrackingConfig(backend="mlflow", uri="http://127.0.0.1:5000", experiment="sweep 1")
    assert tracking.grid_overrides(given, out, "default", "base")[:2] == [
        "tracking.uri='http://127.0.0.1:5000'",
        "tracking.experiment='sweep 1'",
    ]
    assert tracking.grid_overrides(TrackingConfig(backend="tensorboard"), out, "default", "base") == [
        "++tracking.tags.setting=default",
        "++tracking.tags.variant=base",
    ]
    assert tracking.grid_overrides(TrackingConfig(), out, "default", "base") == []


def test_run_names_follow_the_report_labels():
    assert tracking.run_name({"strategy": "pfedhn", "seed": "0"}) == "pfedhn seed0"
    grid = {"strategy": "pfedhn", "seed": "2", "setting": "dirichlet", "variant": "hyperfan_in"}
    assert tracking.run_name(grid) == "pfedhn/hyperfan_in dirichlet seed2"
    assert tracking.run_name({**grid, "variant": "base"}) == "pfedhn dirichlet seed2"


def test_an_mlflow_run_started_again_from_round_0_replaces_its_earlier_record(tmp_path):
    pytest.importorskip("mlflow")
    from fedhyper.tracking.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tags = {"strategy": "fedavg", "seed": "0"}
    first = MlflowTracker(uri, "again", tmp_path, "fedavg seed0")
    first.start({"sim.num_rounds": "3"}, tags, resume_step=0)
    first.log_metrics(0, {"accuracy": 0.1})
    first.log_metrics(1, {"accuracy": 0.2})  # then the process died, with no checkpoint to resume from

    second = MlflowTracker(uri, "again", tmp_path, "fedavg seed0")
    lacks = second.start({"sim.num_rounds": "3"}, tags, resume_step=0)
    second.log_metrics(0, {"accuracy": 0.3})
    second.close()

    client = second.client
    runs = client.search_runs([client.get_experiment_by_name("again").experiment_id])
    assert lacks == 0 and [r.info.run_id for r in runs] == [second.run_id] != [first.run_id]
    assert [(m.step, m.value) for m in client.get_metric_history(second.run_id, "accuracy")] == [(0, 0.3)]
    assert client.get_run(first.run_id).info.lifecycle_stage == "deleted"
