"""Reading runs back and comparing them: per-run figures, mean ± std over seeds."""

import csv
import json
from pathlib import Path

import pytest

from fedhyper import results
from fedhyper.record import SUMMARY_FILE, Summary


def fake_run(
    run_dir: Path,
    strategy: str,
    curve: list[float],
    per_client: list[float],
    sent: list[int],
    received: list[int],
    wall: float = 10.0,
    cpu: float | None = None,
) -> Path:
    """A run directory as RunReporter leaves it: one metrics row a round (all evaluated), and summary.json."""
    run_dir.mkdir(parents=True)
    rows = []
    for rnd, acc in enumerate(curve):
        row = {"round": rnd, "elapsed_s": 2.0 * rnd, "accuracy": acc}
        if rnd:
            row |= {"train_bytes_sent": sent[rnd - 1], "train_bytes_received": received[rnd - 1]}
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    Summary(
        strategy=strategy,
        num_clients=len(per_client),
        rounds=len(curve) - 1,
        final_accuracy=curve[-1],
        best_accuracy=max(curve),
        best_round=curve.index(max(curve)),
        final_accuracy_pooled=None,
        best_accuracy_pooled=None,
        val_accuracy=None,
        best_val_accuracy=None,
        val_accuracy_pooled=None,
        per_client_accuracy=per_client,
        wall_time_s=wall,
        cpu_time_s=cpu,
        seconds_to_accuracy={},
        initial_accuracy=curve[0],
    ).write(run_dir)
    return run_dir


@pytest.fixture
def two_seeds(tmp_path):
    a = fake_run(tmp_path / "a", "pfedhn", [0.1, 0.5, 0.92, 0.9], [0.8, 1.0], [100, 300, 200], [10, 30, 20], wall=10)
    b = fake_run(tmp_path / "b", "pfedhn", [0.1, 0.6, 0.7, 0.95], [0.9, 1.0], [100, 100, 100], [10, 10, 10], wall=14)
    return [results.load_run(d, "pfedhn", seed, target=0.9) for seed, d in enumerate((a, b))]


def test_a_run_reads_back_its_target_round_and_traffic_per_training_round(two_seeds):
    a, b = two_seeds

    assert (a.final_accuracy, a.best_accuracy, a.best_round) == (0.9, 0.92, 2)
    assert (a.rounds_to_target, a.seconds_to_target) == (2, 4.0)
    assert b.rounds_to_target == 3
    assert a.train_bytes_sent_per_round == pytest.approx(200.0)  # (100 + 300 + 200) / 3, round 0 excluded
    assert a.train_bytes_received_per_round == pytest.approx(20.0)
    assert a.evaluate_bytes_sent_per_round == 0.0  # absent keys count as no traffic
    assert a.curve == [(0, 0.1), (1, 0.5), (2, 0.92), (3, 0.9)]


def test_summary_is_mean_and_sample_std_across_seeds(two_seeds):
    (g,) = results.summarise(two_seeds)

    assert (g.setting, g.strategy, g.seeds) == ("pfedhn", "pfedhn", [0, 1])
    assert g.final_accuracy.mean == pytest.approx(0.925)
    assert g.final_accuracy.std == pytest.approx(0.0353553, rel=1e-5)  # |0.95 - 0.9| / sqrt(2)
    assert g.best_accuracy.mean == pytest.approx(0.935)
    assert (g.rounds_to_target.mean, g.rounds_to_target.count) == (2.5, 2)
    assert g.wall_time_s.mean == 12.0
    assert g.train_bytes_sent_per_round.mean == pytest.approx(150.0)


def test_rounds_to_target_counts_only_the_seeds_that_reached_it(tmp_path):
    reached = fake_run(tmp_path / "a", "fedavg", [0.1, 0.95], [0.9], [1], [1])
    never = fake_run(tmp_path / "b", "fedavg", [0.1, 0.5], [0.5], [1], [1])
    runs = [results.load_run(d, "s", i, target=0.9) for i, d in enumerate((reached, never))]

    (g,) = results.summarise(runs)

    assert runs[1].rounds_to_target is None
    assert (g.rounds_to_target.mean, g.rounds_to_target.count, g.rounds_to_target.n) == (1.0, 1, 2)


def test_csv_has_one_row_a_run(two_seeds, tmp_path):
    results.write_csv(two_seeds, tmp_path / "results.csv")

    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["seed"] for r in rows] == ["0", "1"]
    assert rows[0]["rounds_to_target"] == "2" and rows[0]["engine"] == "inprocess"
    assert rows[0]["run_dir"] == Path(two_seeds[0].run_dir).relative_to(tmp_path).as_posix()  # movable with the file
    elsewhere = tmp_path / "report" / "results.csv"
    elsewhere.parent.mkdir()
    results.write_csv(two_seeds, elsewhere)
    assert next(csv.DictReader(elsewhere.open()))["run_dir"] == str(two_seeds[0].run_dir)


@pytest.mark.parametrize(
    ("recorded", "engine"),
    [
        ({"engine": "flower"}, "flower"),
        ({"engine": "inprocess", "message_sweep": None}, "inprocess"),
        ({"engine": None, "message_sweep": "fedhyper"}, "flower"),  # before summaries named it: Flower's launcher's
        ({"engine": None, "message_sweep": None}, "inprocess"),
    ],
)
def test_a_run_reports_the_engine_that_ran_it_whatever_grid_reads_it(two_seeds, tmp_path, recorded, engine):
    run_dir = Path(two_seeds[0].run_dir)
    written = json.loads((run_dir / SUMMARY_FILE).read_text())
    (run_dir / SUMMARY_FILE).write_text(json.dumps({**written, **recorded}))

    results.write_csv([results.load_run(run_dir, "pfedhn", 0, target=0.9)], tmp_path / "results.csv")

    assert next(csv.DictReader((tmp_path / "results.csv").open()))["engine"] == engine


def test_a_summary_with_a_key_the_record_does_not_define_fails_to_read(two_seeds, tmp_path):
    run_dir = Path(two_seeds[0].run_dir)
    written = json.loads((run_dir / SUMMARY_FILE).read_text())
    (run_dir / SUMMARY_FILE).write_text(json.dumps({**written, "final_acuracy": 0.5}))

    with pytest.raises(ValueError, match="final_acuracy"):
        results.load_run(run_dir, "pfedhn", 0, target=0.9)


def test_paired_differences_compare_each_strategy_with_the_best_other_seed_by_seed(tmp_path):
    finals = {"fedavg": [0.80, 0.70, 0.90], "ditto": [0.82, 0.74, 0.91], "local": [0.50, 0.60, 0.55]}
    runs = [
        results.load_run(fake_run(tmp_path / f"{name}{seed}", name, [0.1, acc], [acc], [1], [1]), "s", seed, 0.9)
        for name, accs in finals.items()
        for seed, acc in enumerate(accs)
    ]

    diffs = {d.label: d for d in results.paired_differences(runs)}

    assert diffs["ditto"].reference == "fedavg" and diffs["fedavg"].reference == "ditto"
    assert diffs["local"].reference == "ditto"
    ditto = [0.02, 0.04, 0.01]  # ditto minus fedavg, seed by seed
    assert diffs["ditto"].mean == pytest.approx(sum(ditto) / 3)
    sd = (sum((d - sum(ditto) / 3) ** 2 for d in ditto) / 2) ** 0.5
    assert diffs["ditto"].half_width == pytest.approx(4.303 * sd / 3**0.5)  # t(0.975, 2 df)
    assert diffs["fedavg"].mean == pytest.approx(-diffs["ditto"].mean)
    assert diffs["ditto"].seeds == 3

    to_fedavg = {d.label: d for d in results.paired_differences(runs, reference="fedavg")}  # an ablation's way

    assert to_fedavg["local"].reference == "fedavg" and to_fedavg["ditto"].reference == "fedavg"
    assert to_fedavg["local"].mean == pytest.approx((-0.30 - 0.10 - 0.35) / 3)
    assert to_fedavg["fedavg"].reference == "ditto"  # the reference itself: to the best other
    assert to_fedavg["ditto"].mean == pytest.approx(diffs["ditto"].mean)


def test_the_t_quantile_is_the_tables_and_never_narrower_than_students_between_its_rows():
    from fedhyper.results import t95

    # Student's t, two-sided 95%, at degrees of freedom between and past the table's rows
    true = {2: 4.303, 11: 2.201, 31: 2.040, 45: 2.014, 100: 1.984, 1000: 1.962}
    assert t95(2) == 4.303 and t95(30) == 2.042 and t95(40) == 2.021
    assert all(t95(df) >= q for df, q in true.items())
    assert t95(31) < 2.05 and t95(1000) < 1.99  # the row at or below, not a much wider one
