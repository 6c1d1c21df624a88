"""The comparison's presentation: its Markdown report and plots, from runs read back."""

import json

import pytest

from fedhyper import results
from simulations import plots, report
from tests.fedhyper.test_results import fake_run, two_seeds  # noqa: F401  (a fixture)


def test_a_table_shows_how_many_seeds_reached_the_target(tmp_path):
    reached = fake_run(tmp_path / "a", "fedavg", [0.1, 0.95], [0.9], [1], [1])
    never = fake_run(tmp_path / "b", "fedavg", [0.1, 0.5], [0.5], [1], [1])
    runs = [results.load_run(d, "s", i, target=0.9) for i, d in enumerate((reached, never))]

    assert "| 1.0 (1/2) |" in report.markdown_table(results.summarise(runs), target=0.9)  # one seed: no spread


def test_cpu_time_is_a_column_where_runs_counted_it_naming_how_many_did(tmp_path, two_seeds):  # noqa: F811
    counted = fake_run(tmp_path / "counted", "fedavg", [0.1, 0.95], [0.9], [1], [1], wall=30.0, cpu=12.5)
    before = fake_run(tmp_path / "before", "fedavg", [0.1, 0.95], [0.9], [1], [1], wall=40.0)
    runs = [results.load_run(d, "s", i, target=0.9) for i, d in enumerate((counted, before))]

    table = report.markdown_table(results.summarise(runs), target=0.9)

    assert "| wall time (s) | CPU time (s) |" in table
    assert "| 35.0 ± 7.1 | 12.5 (1/2) |" in table
    assert "CPU time" not in report.markdown_table(results.summarise(two_seeds), target=0.9)  # none counted it


def test_the_report_has_a_row_a_strategy_its_overrides_and_plots(two_seeds):  # noqa: F811
    text = report.markdown_report(two_seeds, 0.9, {"pfedhn": ["data.alpha=0.3"]}, {"pfedhn": ["acc.png"]})

    assert "| pfedhn | 2 | 92.50 ± 3.54 | 93.50 ± 2.12 | 2.5 ± 0.7 |" in text
    assert "150 B ± 71 B" in text  # train bytes sent per round: mean 150, std 70.7
    assert "`data.alpha=0.3`" in text and "![acc.png](acc.png)" in text


def test_plots_are_written_as_png(two_seeds, tmp_path):  # noqa: F811
    names = plots.plot_setting(two_seeds, "pfedhn", tmp_path)

    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curve_band_is_mean_min_max_over_seeds(two_seeds):  # noqa: F811
    rounds, mean, low, high = plots.curve_band(two_seeds)

    assert rounds.tolist() == [0, 1, 2, 3]
    assert mean[1] == pytest.approx(0.55) and low[2] == pytest.approx(0.7) and high[3] == pytest.approx(0.95)


def with_last_evaluation(run_dir, clients: int, rejected: int):
    """``run_dir`` whose last metrics row says how many replies its evaluation counted and rejected."""
    path = run_dir / "metrics.jsonl"
    rows = path.read_text().splitlines()
    rows[-1] = rows[-1][:-1] + f', "eval_clients": {clients}, "evaluate_rejected": {rejected}}}'
    path.write_text("\n".join(rows) + "\n")
    return run_dir


def test_the_report_names_runs_whose_last_evaluation_left_clients_out(tmp_path):
    whole = with_last_evaluation(fake_run(tmp_path / "a", "ditto", [0.1, 0.9], [0.9, 0.9], [1], [1]), 2, 0)
    short = with_last_evaluation(fake_run(tmp_path / "b", "ditto", [0.1, 0.95], [0.9, 1.0], [1], [1]), 1, 1)
    runs = [results.load_run(d, "s", i, target=0.9) for i, d in enumerate((whole, short))]

    assert (runs[0].final_eval_clients, runs[0].final_evaluate_rejected) == (2, 0)
    text = report.markdown_report(runs, 0.9, {}, {})
    assert f"- ditto, seed 1: 1 rejected, 1 counted ({short})" in text
    assert "seed 0:" not in text
    assert "last evaluation counted every client it asked (1 runs)" in report.markdown_report(runs[:1], 0.9, {}, {})


def test_a_record_without_rejection_counts_says_nothing_about_them(two_seeds):  # noqa: F811
    assert two_seeds[0].final_evaluate_rejected is None
    assert "counted every client" not in report.markdown_report(two_seeds, 0.9, {}, {})
    assert "left clients out" not in report.markdown_report(two_seeds, 0.9, {}, {})


def test_the_report_says_which_machines_ran_the_runs_and_how_many_did_not_say(tmp_path):
    epyc = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "cores": 2, "gpu": None, "torch": "2.13.0", "python": "3"}
    h200 = {**epyc, "cores": 16, "gpu": "NVIDIA H200"}
    dirs = [fake_run(tmp_path / f"r{i}", "fedavg", [0.1, 0.9], [0.9], [1], [1]) for i in range(4)]
    for run_dir, machine in zip(dirs, (epyc, epyc, h200), strict=False):  # the fourth predates the record
        summary = json.loads((run_dir / "summary.json").read_text())
        (run_dir / "summary.json").write_text(json.dumps({**summary, "machine": machine}))
    runs = [results.load_run(d, "s", i, target=0.9) for i, d in enumerate(dirs)]

    assert runs[0].machine == "AMD EPYC (AVX512, 2 cores)" and runs[3].machine is None
    text = report.markdown_report(runs, 0.9, {}, {})
    assert (
        "Machines: AMD EPYC (AVX512, 16 cores, NVIDIA H200): 1 run; AMD EPYC (AVX512, 2 cores): 2 runs; "
        "1 recorded before runs named their machine." in text
    )
    assert "Machines:" not in report.markdown_report(runs[3:], 0.9, {}, {})  # nothing recorded: nothing said
