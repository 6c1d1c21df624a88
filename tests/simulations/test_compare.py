"""``python -m simulations.compare``: a grid of runs, its outputs, resuming it, and refusing bad options."""

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fedhyper.record import Summary
from fedhyper.search import Choice, Range
from simulations import compare, inprocess, tuning
from simulations.progress import GridProgress, RunLabel
from simulations.run import check
from strategies import registry

TINY = [
    "data.num_clients=4",
    "data.subset=2000",
    "sim.num_rounds=2",
    "sim.clients_per_round=2",
    "sim.eval_every=1",
    "strategy.local.steps=5",
]


def grid(out_dir, *extra: str) -> list[str]:
    return ["strategies=[pfedhn]", "seeds=[0,1]", "engine=inprocess", f"out_dir={out_dir}", *TINY, *extra]


def summaries(out_dir) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in out_dir.glob("runs/*/*/*/summary.json")}


def first_round_reaching(run_dir, target: float) -> str:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next((str(r["round"]) for r in rows if r["accuracy"] >= target), "")


def test_a_tiny_grid_writes_its_outputs_and_a_repeat_runs_only_what_did_not_finish(tmp_path, capsys):
    out = tmp_path / "cmp"

    code = compare.main(grid(out, "jobs=2", "target_accuracy=0.05"))

    assert code == 0, capsys.readouterr()
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(r["seed"] for r in rows) == ["0", "1"]
    assert {r["strategy"] for r in rows} == {"pfedhn"} and {r["engine"] for r in rows} == {"inprocess"}
    for r in rows:
        run_dir = out / r["run_dir"]  # relative to results.csv's folder
        summary = json.loads((run_dir / "summary.json").read_text())
        assert float(r["final_accuracy"]) == summary["final_accuracy"] and summary["rounds"] == 2
        assert r["rounds_to_target"] == first_round_reaching(run_dir, 0.05)
        assert float(r["train_bytes_sent_per_round"]) > 0
    report = (out / "report.md").read_text()
    assert "| pfedhn | 2 |" in report and "rounds to 5%" in report
    assert (out / "accuracy_default.png").is_file() and (out / "client_accuracy_default.png").is_file()
    first = summaries(out)
    assert len(first) == 2
    assert "done in" in capsys.readouterr().out

    again = compare.main(grid(out, "jobs=2", "target_accuracy=0.05"))

    assert again == 0
    assert summaries(out) == first  # nothing ran again
    assert "2 already finished, 0 to run" in capsys.readouterr().out

    assert ("trained on a GPU" in report) == torch.cuda.is_available()  # in process: the GPU if there is one
    interrupted = out / rows[0]["run_dir"]
    (interrupted / "summary.json").unlink()  # what a killed run leaves behind: no summary

    assert compare.main(grid(out, "jobs=2", "report_only=true")) == 0  # the report of what finished

    assert "1 already finished, report only" in capsys.readouterr().out
    assert [r["run_dir"] for r in csv.DictReader((out / "results.csv").open())] == [rows[1]["run_dir"]]
    assert "| pfedhn | 1 |" in (out / "report.md").read_text()
    assert not (interrupted / "summary.json").exists()  # nothing ran

    assert compare.main(grid(out, "jobs=2")) == 0

    assert "1 already finished, 1 to run" in capsys.readouterr().out
    assert (interrupted / "summary.json").is_file()
    untouched = str(out / rows[1]["run_dir"] / "summary.json")
    assert summaries(out)[untouched] == first[untouched]

    gpu_run = out / rows[1]["run_dir"]  # as if it had come from a GPU machine, half its replies there
    summary = json.loads((gpu_run / "summary.json").read_text())
    assert summary["gpu_training_share"] == (1.0 if torch.cuda.is_available() else 0.0)
    (gpu_run / "summary.json").write_text(json.dumps({**summary, "gpu_training_share": 0.5}))
    assert compare.main(grid(out, "jobs=2", "report_only=true")) == 0
    line = next(x for x in (out / "report.md").read_text().splitlines() if "trained on a GPU" in x)
    assert line.endswith(f": pfedhn seed {rows[1]['seed']} (50%).")


def test_the_plan_gives_every_strategy_the_same_data_and_each_setting_its_own(tmp_path):
    cc, common = compare.load_compare(
        [
            "strategies=[pfedhn]",
            "seeds=[0,1]",
            "settings=[pfedhn,dirichlet]",
            "sim.num_rounds=7",
            '+strategy_overrides.pfedhn=["hnet.hidden_dim=17"]',
            f"out_dir={tmp_path}",
        ]
    )

    runs = compare.plan(cc, common)

    assert [(r.label.seed, r.label.setting) for r in runs] == [
        (0, "pfedhn"),
        (0, "dirichlet"),
        (1, "pfedhn"),
        (1, "dirichlet"),
    ]
    data = {(r.label.setting, r.label.seed): r.config["data"] for r in runs}
    assert data["dirichlet", 0]["partition"] == "dirichlet" and data["dirichlet", 0]["num_clients"] == 100
    assert data["pfedhn", 1]["partition"] == "pathological" and data["pfedhn", 1]["num_clients"] == 50
    assert all(r.config["sim"]["num_rounds"] == 7 and r.config["hnet"]["hidden_dim"] == 17 for r in runs)
    assert [r.config["seed"] for r in runs] == [0, 0, 1, 1]
    assert len({r.label.run_dir for r in runs}) == 4
    assert not tmp_path.joinpath("runs").exists()  # planning runs nothing


def test_checkpointing_a_run_or_not_names_the_same_run(tmp_path):
    def run_dir(*extra: str) -> Path:
        cc, common = compare.load_compare(grid(tmp_path, *extra))
        return compare.plan(cc, common)[0].label.run_dir

    plain = run_dir()
    assert run_dir("sim.checkpoint_every=1") == plain
    assert run_dir("sim.num_rounds=3") != plain  # an option that decides the results renames it


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("strategies=[pfedhn,nope]", "strategy='nope' is unknown; choose one of"),
        ("settings=[mars]", "settings: 'mars' is not defined"),
        ("variants=[base,nope]", "variants: 'nope' is not defined; choose among base, embedding-per_tensor, "),
        ("variants=[base,base]", "variants=['base', 'base'] must be a non-empty list without repeats"),
        ("seeds=[]", "seeds=[] must be a non-empty list"),
        ("seed=3", "use seeds=[...]"),
        ("strategy=pfedhn", "use strategies=[...]"),
        ("engine=warp", "engine='warp' is unknown"),
        ("target_accuracy=90", "target_accuracy=90.0 must be in (0, 1]"),
        ("sim.num_rounds=0", "sim.num_rounds=0 must be at least 1 (strategy pfedhn, setting default"),
        ("strategy.nope=1", "Key 'nope' not in 'PFedHNConfig'"),
        ("jobs=abc", "jobs: Value 'abc' of type 'str' could not be converted to Integer"),
        ("report_dir=../elsewhere", "report_dir='../elsewhere' must be a folder inside out_dir"),
        ("report_dir=runs/mine", "report_dir='runs/mine' must be a folder inside out_dir, not runs/ or tuning/"),
        ("reference=fedavg", "reference='fedavg' is none of this grid's labels: pfedhn"),
    ],
)
def test_a_bad_option_exits_2_with_one_line_before_anything_runs(tmp_path, capsys, override, message):
    code = compare.main(grid(tmp_path / "cmp", override))

    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.startswith("config error:") and err.count("\n") == 1
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["settle=true", "engine=flower"], "settle=true evaluates in-process checkpoints"),
        (["sim.eval_test=false"], "sim.eval_test=false: a grid reports its runs' test accuracy"),
        (["settle=true", "data.val_fraction=0"], "data.val_fraction=0.0: tune=N and settle=true choose on validation"),
        (["tune=2", "data.val_fraction=0"], "data.val_fraction=0.0: tune=N and settle=true choose on validation"),
    ],
)
def test_a_grid_that_could_not_report_or_choose_its_values_is_refused_before_anything_runs(
    tmp_path, capsys, extra, message
):
    argv = [a for a in grid(tmp_path / "cmp", *extra) if not (a == "engine=inprocess" and "engine=flower" in extra)]

    code = compare.main(argv)

    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "cmp").exists()


def test_two_variants_run_side_by_side_with_their_own_overrides_labels_and_report_rows(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = [a for a in grid(out, "jobs=2") if not a.startswith("seeds=")]

    code = compare.main([*args, "seeds=[0]", "variants=[base,embedding-chunked]"])

    assert code == 0, capsys.readouterr()
    assert "pfedhn/embedding-chunked · default · seed 0 — done in" in capsys.readouterr().out
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert set(rows) == {"base", "embedding-chunked"}
    base, chunked = (out / rows[v]["run_dir"] for v in ("base", "embedding-chunked"))
    assert base.parent == out / "runs/default/pfedhn"  # where a grid without variants puts it
    assert chunked.parent == out.resolve() / "runs/default/pfedhn/embedding-chunked"
    hnet = {v: OmegaConf.load(out / rows[v]["run_dir"] / "config.yaml").hnet for v in rows}
    assert (hnet["base"].output, hnet["embedding-chunked"].output) == ("per_tensor", "chunked")
    assert hnet["base"].input == hnet["embedding-chunked"].input == "embedding"
    report = (out / "report.md").read_text()
    assert "| strategy/variant | seeds |" in report
    assert report.count("| pfedhn | 1 |") == 1 and report.count("| pfedhn/embedding-chunked | 1 |") == 1
    assert "novel accuracy (%)" not in report  # no run reported it: no column

    # The report is rebuilt from summary.json: a run that reports more gets more columns, the others empty cells.
    extra = {"novel_accuracy": 0.5, "generalization_gap": 0.125, "hnet_parameters": 1234}
    for run_dir, added in ((chunked, extra), (base, {})):
        summary = {k: v for k, v in json.loads((run_dir / "summary.json").read_text()).items() if k not in extra}
        (run_dir / "summary.json").write_text(json.dumps(summary | added))
    assert compare.main([*args, "seeds=[0]", "variants=[base,embedding-chunked]"]) == 0

    report = (out / "report.md").read_text()
    assert "| novel accuracy (%) | generalization gap (pp) | hnet parameters |" in report
    assert "| 50.00 | 12.50 | 1234 |" in report.split("| pfedhn/embedding-chunked | 1 |")[1].splitlines()[0]
    assert "| – | – | – |" in report.split("| pfedhn | 1 |")[1].splitlines()[0]
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert (rows["embedding-chunked"]["novel_accuracy"], rows["embedding-chunked"]["hnet_parameters"]) == (
        "0.5",
        "1234",
    )
    assert rows["base"]["novel_accuracy"] == rows["base"]["hnet_parameters"] == ""


def test_a_variant_key_set_again_for_every_run_is_refused(tmp_path, capsys):
    code = compare.main(grid(tmp_path / "cmp", "variants=[base,attention]", "hnet.output=component"))

    err = capsys.readouterr().err
    assert code == 2
    assert "hnet.output: set by variant attention and again by the command line" in err
    assert not (tmp_path / "cmp").exists()


def test_progress_estimates_the_time_left_of_a_run_and_of_the_grid(tmp_path):
    progress = GridProgress(pending=3, parallel=2, write=lambda line: None)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = [{"round": 0, "elapsed_s": 1.0}, {"round": 2, "elapsed_s": 10.0}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    label = RunLabel(1, 3, "pfedhn", "default", 0, num_rounds=10, run_dir=run_dir)

    where, left = progress.run_eta(label)

    assert left == pytest.approx(40.0) and where.startswith("round 2/10")
    # No run finished yet: a queued run is expected to take as long as this one will (50 s).
    assert progress.grid_eta([label]) == pytest.approx((40.0 + 2 * 50.0) / 2)
    progress.finished(label, 30.0, summary(final=0.5, best=0.6, val=0.55))
    assert progress.grid_eta([label]) == pytest.approx((40.0 + 1 * 30.0) / 2)


def summary(final: float | None, best: float | None, val: float | None) -> Summary:
    return Summary("pfedhn", 4, 2, final, best, 2, None, None, val, val, None, [], 1.0, {}, 0.1)


def test_a_finished_run_is_reported_by_its_test_accuracy_and_a_tuning_trial_by_its_validation_accuracy():
    lines = []
    progress = GridProgress(pending=2, parallel=1, write=lines.append)
    label = RunLabel(1, 2, "pfedhn", "default", 0, num_rounds=2, run_dir=Path("run"))

    progress.finished(label, 5.0, summary(final=0.5, best=0.6, val=0.55))
    progress.finished(label, 5.0, summary(final=None, best=None, val=0.55))  # the test split unread

    assert lines[0].endswith("final accuracy 50.00%, best 60.00%")
    assert lines[1].endswith("validation accuracy 55.00%")


def test_tuning_picks_the_best_validation_trial_and_the_grid_runs_with_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "tuned"
    # One strategy: FedProx's space holds the shared key (local lr) and one of its own (mu).
    argv = ["strategies=[fedprox]", "seeds=[0]", "engine=inprocess", "jobs=1", f"out_dir={out}", *TINY,
            "sim.num_rounds=4", "tune=2", "tune_rounds=2"]  # fmt: skip
    pools = []
    monkeypatch.setattr(inprocess, "worker_pool", lambda n, start=inprocess.worker_pool: pools.append(n) or start(n))

    assert compare.main(argv) == 0, capsys.readouterr()

    assert pools == [1]  # both tuning waves and the grid ran in the command's one worker, started once

    tuned = OmegaConf.to_container(OmegaConf.load(out / "tuned.yaml"))
    trials = [json.loads(p.read_text()) | {"dir": p.parent}
              for p in (out / "tuning" / "default" / "fedprox").glob("*/summary.json")]  # fmt: skip
    assert len(trials) == 2
    assert all(t["final_accuracy"] is None and t["rounds"] == 2 for t in trials)  # the test split unread
    best = max(trials, key=lambda t: t["val_accuracy"])
    cell = tuned["chosen"]["default"]["fedprox"]
    assert cell["val_accuracy"] == best["val_accuracy"]
    best_config = OmegaConf.load(best["dir"] / "config.yaml")
    assert cell["values"]["strategy.local.lr"] == best_config.strategy.local.lr
    assert cell["values"]["strategy.mu"] == best_config.strategy.mu
    (row,) = csv.DictReader((out / "results.csv").open())
    grid_config = OmegaConf.load(out / row["run_dir"] / "config.yaml")
    assert grid_config.strategy.local.lr == cell["values"]["strategy.local.lr"]
    assert grid_config.strategy.mu == cell["values"]["strategy.mu"]
    assert grid_config.sim.num_rounds == 4 and grid_config.sim.eval_test
    assert "## Tuning" in (out / "report.md").read_text()
    before = {p: p.stat().st_mtime_ns for p in out.glob("**/summary.json")}

    assert compare.main(argv) == 0  # a repeat draws the same trials and finds every run finished

    assert {p: p.stat().st_mtime_ns for p in out.glob("**/summary.json")} == before
    capsys.readouterr()

    assert compare.main([*argv[:-2], "tune=3", "tune_rounds=2", "report_only=true"]) == 1  # a third trial to run

    assert "the tuning has not ended in any of the 1 cells" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("**/summary.json")} == before
    report = (out / "report.md").read_text()

    # FedAvg joins the grid: until its tuning ends a report holds FedProx's cell and says what it left out.
    assert compare.main(["strategies=[fedprox,fedavg]", *argv[1:], "report_only=true"]) == 0

    assert "1 cells left out, their tuning not ended: fedavg · default" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("**/summary.json")} == before  # nothing ran
    partial = (out / "report.md").read_text()
    assert "Not in this report yet, their tuning not ended: fedavg · default." in partial
    assert "| fedprox | 1 |" in partial and "| fedavg |" not in partial
    assert partial.split("\n## Tuning")[1] == report.split("\n## Tuning")[1]  # fedavg chose nothing yet
    # A setting where no cell has ended its tuning is left out whole, the first one included.
    assert compare.main([*argv, "settings=[dirichlet,default]", "report_only=true"]) == 0
    assert "1 cells left out, their tuning not ended: fedprox · dirichlet" in capsys.readouterr().err
    assert "## Setting `default`" in (out / "report.md").read_text()


def test_a_tuning_trial_that_cannot_train_is_recorded_and_not_run_again(tmp_path, capsys, monkeypatch):
    from strategies.fedavg import FedAvgConfig

    # The trial bounds the update norm so tightly that every reply is left out: it stops idle.
    monkeypatch.setattr(FedAvgConfig, "search_space", {"sim.max_update_norm": Choice((1e-9,))})
    out = tmp_path / "idle"
    argv = ["strategies=[fedavg]", "seeds=[0]", "engine=inprocess", "jobs=1", f"out_dir={out}", *TINY,
            "sim.num_rounds=1", "sim.max_idle_rounds=1", "tune=1", "tune_rounds=1"]  # fmt: skip

    assert compare.main(argv) == 0, capsys.readouterr()  # the grid runs with the defaults: nothing was chosen

    (trial,) = (out / "tuning" / "default" / "fedavg").iterdir()
    assert not (trial / "summary.json").exists()
    idle = json.loads((trial / "idle.json").read_text())
    assert idle["round"] == 1 and "left out so far: huge x2" in idle["reason"] and idle["diverged"]
    cell = OmegaConf.to_container(OmegaConf.load(out / "tuned.yaml"))["chosen"]["default"]["fedavg"]
    assert cell["failed_trials"] == 1 and cell["values"] == {}
    log = (trial / "run.log").stat().st_mtime_ns
    capsys.readouterr()

    assert compare.main([*argv, "report_only=true"]) == 0  # the tuning has ended: its report is written

    assert "tuning, trial 1/1 of 1 cells: 0 to run" in capsys.readouterr().out
    assert (trial / "run.log").stat().st_mtime_ns == log
    assert "| fedavg | 1 |" in (out / "report.md").read_text()


def test_a_grid_run_that_diverged_is_reported_and_ended_and_one_whose_clients_failed_is_run_again(tmp_path, capsys):
    out = tmp_path / "idle"
    argv = [
        "strategies=[fedavg,fedprox]",
        "seeds=[0]",
        "engine=inprocess",
        "jobs=1",
        f"out_dir={out}",
        *TINY,
        "sim.max_idle_rounds=1",
        '+strategy_overrides.fedavg=["sim.max_update_norm=1e-9"]',  # every update over the bound: diverges
        '+strategy_overrides.fedprox=["faults.fraction=1.0","faults.kind=raise"]',  # every client raises
    ]
    runs = {name: out / "runs" / "default" / name for name in ("fedavg", "fedprox")}

    assert compare.main(argv) == 1  # FedProx's run failed; FedAvg's diverged, which is a result, not a failure

    (diverged,) = runs["fedavg"].iterdir()
    (failed,) = runs["fedprox"].iterdir()
    assert json.loads((diverged / "idle.json").read_text())["diverged"]
    assert not json.loads((failed / "idle.json").read_text())["diverged"]  # errors: maybe the machine, the code
    output = capsys.readouterr()
    assert "fedavg · default · seed 0 — DIVERGED, ended: round 1:" in output.out
    assert "1 runs failed" in output.err and "1 runs diverged" in output.err
    assert (
        "Diverged, so not in the tables (every reply left out, `idle.json`): fedavg · default seed 0."
        in (out / "report.md").read_text()
    )
    logs = {name: next(run.iterdir()) / "run.log" for name, run in runs.items()}
    written = {name: log.stat().st_mtime_ns for name, log in logs.items()}

    assert compare.main(argv) == 1

    assert "0 already finished, 1 to run with engine=inprocess; 1 diverged, ended without a result" in (
        capsys.readouterr().out
    )
    assert logs["fedavg"].stat().st_mtime_ns == written["fedavg"]  # not run again
    assert logs["fedprox"].stat().st_mtime_ns != written["fedprox"]


def test_a_run_recorded_before_the_config_gained_an_option_is_reused_not_run_again(tmp_path, capsys):
    out = tmp_path / "older"
    argv = ["strategies=[fedavg]", "seeds=[0]", "engine=inprocess", "jobs=1", f"out_dir={out}", *TINY]
    assert compare.main(argv) == 0, capsys.readouterr()
    (run_dir,) = out.glob("runs/*/*/seed0-*")
    recorded = OmegaConf.load(run_dir / "config.yaml")
    del recorded.sim["eval_test"]  # as a config written before sim.eval_test existed
    OmegaConf.save(recorded, run_dir / "config.yaml")
    older = run_dir.rename(run_dir.with_name("seed0-0123456789"))  # and named by that config's digest
    before = (older / "summary.json").stat().st_mtime_ns

    assert compare.main(argv) == 0

    assert "1 already finished, 0 to run" in capsys.readouterr().out
    assert (older / "summary.json").stat().st_mtime_ns == before
    (row,) = csv.DictReader((out / "results.csv").open())
    assert out / row["run_dir"] == older


def test_tuned_yaml_keeps_the_cells_of_an_earlier_command_and_replaces_only_its_own(tmp_path):
    path = tmp_path / tuning.TUNED_FILE

    def study(strategy: str, lr: float, score: float) -> tuning.Study:
        cell = tuning.new_study("dirichlet", strategy, "base", {"strategy.local.lr": Range(1e-3, 1e-1)}, 25)
        cell.trials.append({"values": {"strategy.local.lr": lr}, tuning.OBJECTIVE: score, "run_dir": "x"})
        return cell

    tuning.write_tuned([study("fedavg", 0.01, 0.8), study("ditto", 0.02, 0.9)], 1, path)
    tuning.write_tuned([study("ditto", 0.03, 0.7)], 1, path)  # the same grid again, ditto's config changed

    chosen = OmegaConf.to_container(OmegaConf.load(path))["chosen"]["dirichlet"]
    assert chosen["fedavg"]["values"] == {"strategy.local.lr": 0.01}
    assert chosen["ditto"]["values"] == {"strategy.local.lr": 0.03} and chosen["ditto"]["val_accuracy"] == 0.7
    assert tuning.write_tuned([study("ditto", 0.03, 0.7)], 1, path)["trials_per_cell"] == 1
    again = study("ditto", 0.04, 0.75)
    again.trials.append({"values": {"strategy.local.lr": 0.05}, tuning.OBJECTIVE: 0.6, "run_dir": "y"})
    record = tuning.write_tuned([again], 2, path)  # ditto tuned again with 2 trials, fedavg's cell kept with 1
    assert record["trials_per_cell"] == [1, 2]
    assert "Strategies had 1 or 2 trials per setting" in tuning.markdown(record)


def test_a_second_grid_over_the_same_runs_reports_in_its_own_folder_without_the_others_tuning(tmp_path, capsys):
    out = tmp_path / "shared"
    argv = ["strategies=[fedavg]", "seeds=[0]", "engine=inprocess", "jobs=1", f"out_dir={out}", *TINY]
    assert compare.main(argv) == 0, capsys.readouterr()
    first = (out / "report.md").read_text()
    space = {"strategy.local.lr": Range(1e-3, 1e-1)}
    cells = [tuning.new_study("default", name, "base", space, 2) for name in ("fedavg", "ditto")]
    for cell, lr in zip(cells, (0.01, 0.02), strict=True):
        cell.trials.append({"values": {"strategy.local.lr": lr}, tuning.OBJECTIVE: 0.8, "run_dir": "x"})
    tuning.write_tuned(cells, 1, out / tuning.TUNED_FILE)  # as if another grid had tuned ditto into this folder

    assert compare.main([*argv, "report_dir=ablation/one", "report_only=true", "reference=fedavg"]) == 0

    mine = out / "ablation" / "one"
    (row,) = csv.DictReader((mine / "results.csv").open())
    assert row["run_dir"].startswith("../../runs/default/fedavg/seed0-")  # the grid's run, relative to the file
    assert (mine / row["run_dir"] / "summary.json").is_file()
    report = (mine / "report.md").read_text()
    assert "| fedavg | 1 |" in report
    # its runs were not tuned (no tune=N): no tuning section claims values they did not use, nor another grid's
    assert "## Tuning" not in report and "0.01" not in report and "ditto" not in report
    assert (mine / "accuracy_default.png").is_file()
    assert (out / "report.md").read_text() == first  # the first grid's report is left as it was


@pytest.mark.parametrize("name", sorted(registry.REGISTRY))
def test_every_corner_of_each_strategys_search_space_is_a_valid_run(name):
    """A trial draws anywhere in the space: its ends (and each choice) must pass the run's own checks."""
    space = registry.REGISTRY[name].config_cls.search_space
    corners = {key: list(d.values) if isinstance(d, Choice) else [d.low, d.high] for key, d in space.items()}

    for key, values in corners.items():
        for value in values:
            cfg = check([f"strategy={name}", f"{key}={value}"])

            assert OmegaConf.select(OmegaConf.structured(cfg), key) == value


def test_a_runs_name_ignores_its_checkpointing_and_its_idle_stop():
    digest = compare.config_digest
    run = {"seed": 0, "sim": {"num_rounds": 2, "checkpoint_every": 0, "max_idle_rounds": 5}}
    same = {"seed": 0, "sim": {"num_rounds": 2, "checkpoint_every": 20}}  # recorded before max_idle_rounds
    longer = {"seed": 0, "sim": {"num_rounds": 3, "checkpoint_every": 0, "max_idle_rounds": 5}}

    assert digest(run, "inprocess") == digest(same, "inprocess") != digest(longer, "inprocess")


def test_settle_chooses_evaluation_options_on_seed_0s_validation_and_evaluates_every_seed_with_them(
    tmp_path, capsys, monkeypatch
):
    from strategies.fedavg_ft import FedAvgFTConfig

    space = {"strategy.finetune_steps": (0, 10), "strategy.finetune_lr": (None, 0.05)}  # 10 at None: the run's own
    monkeypatch.setattr(FedAvgFTConfig, "eval_space", space)
    out = tmp_path / "settled"
    argv = ["strategies=[fedavg_ft,fedavg]", "seeds=[0,1]", "engine=inprocess", "jobs=2", f"out_dir={out}", *TINY,
            "sim.checkpoint_every=2", "settle=true"]  # fmt: skip

    assert compare.main(argv) == 0, capsys.readouterr()

    settled = OmegaConf.to_container(OmegaConf.load(out / "settled.yaml"))["default"]
    assert list(settled) == ["fedavg_ft"]  # FedAvg has no evaluation-only option
    cell = settled["fedavg_ft"]
    runs = {seed: next(out.glob(f"runs/default/fedavg_ft/seed{seed}-*")) for seed in (0, 1)}

    def kept(seed: int) -> list[dict]:
        cache = runs[seed] / "reevaluation.jsonl"
        return [json.loads(line) for line in cache.open()] if cache.exists() else []

    def summary(seed: int) -> dict:
        return json.loads((runs[seed] / "summary.json").read_text())

    own = {"strategy.finetune_steps": 10, "strategy.finetune_lr": None}
    # in order, the two of 0 steps evaluated once: as the first, with the rate as recorded (None)
    assert [c["values"] for c in cell["candidates"]] == [
        {"strategy.finetune_steps": 0, "strategy.finetune_lr": None},
        own,
        {"strategy.finetune_steps": 10, "strategy.finetune_lr": 0.05},
    ]
    # the run's own options are its recorded evaluation; the others evaluated on its checkpoint and kept
    assert [row["options"] for row in kept(0)] == [c["values"] for c in cell["candidates"] if c["values"] != own]
    assert all(row["metrics"]["round"] == 2 for row in kept(0))
    assert cell["candidates"][1]["val_accuracy"] == pytest.approx(summary(0)["val_accuracy"], abs=1e-6)
    best = max(cell["candidates"], key=lambda c: c["val_accuracy"])  # validation decides, the first of equals
    assert cell["chosen"] == best["values"] and cell["seeds_evaluated"] == [0, 1]
    # seed 1: the chosen values only, read from its record where they are its own
    assert [row["options"] for row in kept(1)] == ([] if best["values"] == own else [best["values"]])

    def accuracy(seed: int) -> float:
        row = next((r for r in kept(seed) if r["options"] == best["values"]), None)
        return summary(seed)["final_accuracy"] if row is None else row["metrics"]["accuracy"]

    mean = (accuracy(0) + accuracy(1)) / 2
    section = (out / "report.md").read_text().split("## Evaluation options chosen at convergence")[1]
    assert f"| fedavg_ft | 2 | {100 * mean:.2f} ± " in section and "| fedavg | 2 |" in section

    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/**/reevaluation.jsonl")}
    for checkpoint_file in out.glob("runs/**/checkpoint.pt"):
        checkpoint_file.unlink()  # what was evaluated is kept: the report needs no checkpoint
    assert compare.main([*argv, "report_only=true"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/**/reevaluation.jsonl")} == before
    assert OmegaConf.to_container(OmegaConf.load(out / "settled.yaml"))["default"]["fedavg_ft"] == cell

    # Another machine, with the grid's committed files only: no checkpoint, nothing evaluated kept
    for cache in out.glob("runs/**/reevaluation.jsonl"):
        cache.unlink()

    def learned(run_dir) -> dict:  # a summary without its clocks
        s = json.loads((run_dir / "summary.json").read_text())
        return {k: v for k, v in s.items() if k not in ("wall_time_s", "cpu_time_s", "seconds_to_accuracy")}

    recorded = {d: learned(d) for d in out.glob("runs/default/*/seed*")}
    written = {d: (d / "summary.json").stat().st_mtime_ns for d in recorded}
    capsys.readouterr()

    assert compare.main(argv) == 0, capsys.readouterr()

    again = {d for d in recorded if (d / "summary.json").stat().st_mtime_ns != written[d]}
    # seed 0's run again for its candidates; seed 1's too where the choice is not what it evaluated with
    assert again == ({runs[0]} if best["values"] == own else {runs[0], runs[1]})
    assert "running them again, then settling again" in capsys.readouterr().out
    assert {d: learned(d) for d in recorded} == recorded  # the same runs again
    assert OmegaConf.to_container(OmegaConf.load(out / "settled.yaml"))["default"]["fedavg_ft"] == cell
