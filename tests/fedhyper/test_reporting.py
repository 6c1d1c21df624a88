"""RunReporter's clocks: wall time, and the CPU time that a waiting process does not spend."""

import json
import time

from fedhyper.reporting import RunReporter


def spin(seconds: float) -> None:
    """Busy this thread for ``seconds`` of its own CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_time_counts_work_not_waiting_and_carries_over_a_resume(tmp_path):
    reporter = RunReporter(tmp_path, "fedavg", num_clients=2, num_rounds=1)
    spin(0.2)
    time.sleep(0.5)  # as a run paused, or waiting for its turn on a shared core

    cpu = reporter.cpu_seconds()
    assert 0.2 <= cpu < 0.45  # the spin, not the sleep
    state = reporter.state_dict()
    assert state["elapsed_s"] >= 0.7 and state["cpu_s"] >= 0.2

    resumed = RunReporter(tmp_path, "fedavg", num_clients=2, num_rounds=1, fresh=False)
    resumed.load_state_dict(state)
    spin(0.1)
    assert resumed.cpu_seconds() >= state["cpu_s"] + 0.1


def test_a_resume_from_a_record_that_did_not_count_cpu_time_leaves_it_unknown(tmp_path):
    reporter = RunReporter(tmp_path, "fedavg", num_clients=2, num_rounds=1)
    state = reporter.state_dict()
    del state["cpu_s"]

    resumed = RunReporter(tmp_path, "fedavg", num_clients=2, num_rounds=1, fresh=False)
    resumed.load_state_dict(state)

    assert resumed.cpu_seconds() is None and "cpu_s" not in resumed.state_dict()


def test_a_run_that_diverged_has_ended_until_a_run_starts_again_in_its_folder(tmp_path):
    from fedhyper import results

    reporter = RunReporter(tmp_path, "fedavg", num_clients=2, num_rounds=4)
    assert not results.has_ended(tmp_path)

    reporter.stopped_idle(3, "round 3: 2 training rounds in a row had no valid reply", diverged=True)

    assert results.has_ended(tmp_path) and results.diverged(tmp_path) and not results.is_finished(tmp_path)
    assert json.loads((tmp_path / "idle.json").read_text())["round"] == 3

    RunReporter(tmp_path, "fedavg", num_clients=2, num_rounds=4, fresh=False)  # resumed: it runs again

    assert not results.has_ended(tmp_path)
    reporter.stopped_idle(3, "round 3: ... error x4", diverged=False)  # its clients raised: worth running again
    assert not results.has_ended(tmp_path)
