"""tracking=tensorboard|mlflow on real runs, read back with TensorBoard's event reader and MLflow's client.

Runs use the in-process engine (the real ServerApp and ClientApp in one process); one test reads
the MLflow run of the shared Flower/Ray simulation (tests/simulations/shared_run.py), and one
goes through an MLflow server.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fedhyper import checkpoint
from fedhyper.config import ExperimentConfig
from simulations import compare, deploy
from simulations.inprocess import InProcessGrid, run_experiment
from simulations.launch import free_port
from strategies import experiment, registry
from strategies.app import run
from tests.simulations.shared_run import ROUNDS

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer  # noqa: E402
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.num_clients=4", "data.subset=2000", "sim.clients_per_round=2", "sim.eval_every=1",
        "strategy.local.steps=5"]  # fmt: skip


def tiny(backend: str, uri: str = "", strategy: str = "pfedhn", rounds: int = 3) -> ExperimentConfig:
    cfg = ExperimentConfig(strategy=registry.get(strategy).config_cls())
    cfg.data.num_clients, cfg.data.subset = 4, 2000
    cfg.sim.num_rounds, cfg.sim.clients_per_round, cfg.sim.eval_every = rounds, 2, 1
    cfg.strategy.local.steps = 5
    cfg.tracking.backend, cfg.tracking.uri = backend, uri
    return cfg


def metric_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def hparams(acc: EventAccumulator) -> dict[str, str]:
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.string_value for k, v in start.hparams.items()}


def session_status(acc: EventAccumulator) -> int:
    """The status the run's TensorBoard session ended with (api_pb2.STATUS_*)."""
    content = acc.PluginTagToContent("hparams")["_hparams_/session_end_info"]
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_end_info.status


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def only_run(client, experiment_name: str):
    runs = client.search_runs([client.get_experiment_by_name(experiment_name).experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_tensorboard_holds_one_scalar_per_metric_per_round_and_the_runs_hparams(tmp_path):
    summary = run_experiment(tiny("tensorboard"), tmp_path)

    acc = events(tmp_path)
    rows = metric_rows(tmp_path)
    assert scalars(acc, "accuracy") == [(r["round"], pytest.approx(r["accuracy"], rel=1e-6)) for r in rows]
    assert [s for s, _ in scalars(acc, "train_loss")] == [1, 2, 3]
    assert scalars(acc, "summary/final_accuracy") == [(3, pytest.approx(summary.final_accuracy, rel=1e-6))]
    assert hparams(acc) == {"strategy": "pfedhn", "seed": "0"}
    assert session_status(acc) == api_pb2.STATUS_SUCCESS
    assert acc.Tags()["images"] == ["embeddings"]
    assert sorted(acc.PluginTagToContent("text")) == ["config.yaml/text_summary", "summary.json/text_summary"]


def test_mlflow_holds_the_config_the_rounds_the_summary_and_the_files(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    summary = run_experiment(tiny("mlflow", uri), tmp_path / "run")

    client = mlflow.MlflowClient(uri)
    found = only_run(client, "fedhyper")
    run_id = found.info.run_id
    assert found.info.status == "FINISHED" and found.info.run_name == "pfedhn seed0"
    assert found.data.params["data.num_clients"] == "4" and found.data.params["sim.num_rounds"] == "3"
    assert found.data.params["strategy.name"] == "pfedhn" and "tracking.uri" not in found.data.params
    assert {found.data.tags["strategy"], found.data.tags["seed"]} == {"pfedhn", "0"}
    rows = metric_rows(tmp_path / "run")
    assert history(client, run_id, "accuracy") == [(r["round"], r["accuracy"]) for r in rows]
    assert found.data.metrics["summary/best_accuracy"] == summary.best_accuracy
    files = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "summary.json", "metrics.jsonl", "embeddings.png"} <= files
    assert (tmp_path / "mlartifacts").is_dir()  # beside the store, not in the working directory


def crash_then_resume(crashing_grid, run_dir: Path, cfg: ExperimentConfig) -> None:
    """Round 5 ends and is tracked, round 6 crashes; the checkpoint holds round 4; resume."""
    cfg.sim.checkpoint_every = 2
    grid = crashing_grid(4, call=13)  # discovery, round-0 evaluation, then a train and an evaluation per round
    with pytest.raises(RuntimeError, match="the machine died"):
        run(grid, experiment.Experiment(cfg, run_dir, True))
    assert checkpoint.load_checkpoint(run_dir / checkpoint.FILENAME)["round"] == 4
    run(InProcessGrid(4, node_offset=5000), experiment.Experiment(cfg, run_dir, True, resume=True))


@pytest.mark.parametrize("backend", ["tensorboard", "mlflow"])
def test_a_resumed_run_continues_its_tracked_run_without_a_repeated_or_missing_step(tmp_path, backend, crashing_grid):
    uri = f"sqlite:///{tmp_path}/mlflow.db" if backend == "mlflow" else ""
    run_dir = tmp_path / "run"

    crash_then_resume(crashing_grid, run_dir, tiny(backend, uri, strategy="fedavg", rounds=7))

    expected = [(r["round"], r["accuracy"]) for r in metric_rows(run_dir)]
    assert [s for s, _ in expected] == list(range(8))
    if backend == "tensorboard":
        assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # one file per process
        assert scalars(events(run_dir), "accuracy") == [(s, pytest.approx(v, rel=1e-6)) for s, v in expected]
    else:
        client = mlflow.MlflowClient(uri)
        found = only_run(client, "fedhyper")  # the resumed process continued the same run
        assert history(client, found.info.run_id, "accuracy") == expected
        assert found.info.status == "FINISHED"


@pytest.mark.parametrize("backend", ["tensorboard", "mlflow"])
def test_a_run_that_raises_ends_its_tracked_run_as_failed_not_running(tmp_path, backend, crashing_grid):
    uri = f"sqlite:///{tmp_path}/mlflow.db" if backend == "mlflow" else ""
    cfg = tiny(backend, uri, strategy="fedavg")

    with pytest.raises(RuntimeError, match="the machine died"):  # round 1's evaluation: rounds 0 and 1 tracked
        run(crashing_grid(4, call=4), experiment.Experiment(cfg, tmp_path, True))

    if backend == "tensorboard":
        acc = events(tmp_path)
        assert [s for s, _ in scalars(acc, "accuracy")] == [0] and session_status(acc) == api_pb2.STATUS_FAILURE
    else:
        found = only_run(mlflow.MlflowClient(uri), "fedhyper")
        assert found.info.status == "FAILED" and found.info.end_time is not None


def test_an_unreachable_tracking_server_is_one_warning_and_the_run_goes_on(tmp_path):
    summary = run_experiment(tiny("mlflow", f"http://127.0.0.1:{free_port()}", strategy="fedavg", rounds=2), tmp_path)

    assert summary.rounds == 2 and (tmp_path / "summary.json").is_file()
    warnings = [line for line in (tmp_path / "run.log").read_text().splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "cannot be reached" in warnings[0]


def test_tracking_none_imports_neither_backend(tmp_path):
    code = (
        "import sys; from simulations import compare, deploy, run; from fedhyper import tracking; "
        "from fedhyper.config import ExperimentConfig; from strategies import registry; "
        "cfg = ExperimentConfig(strategy=registry.get('fedavg').config_cls()); "
        "t = tracking.open_run(cfg, sys.argv[1]); t.record([{'round': 0, 'accuracy': 0.5}]); t.finish({}); "
        "print(t.tracker, sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'tensorboard'}))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert result.stdout == "None []\n", result.stderr[-2000:]


def test_the_deployment_launcher_writes_the_chosen_store_into_the_runs_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the launch directory, whose outputs/ holds the local store

    default = deploy.write_config(["tracking=mlflow"], 2, tmp_path / "a")
    given = deploy.write_config(["tracking=mlflow", "tracking.uri=http://127.0.0.1:5000"], 2, tmp_path / "b")

    assert OmegaConf.load(default).tracking.uri == f"sqlite:///{tmp_path}/outputs/mlflow.db"
    assert OmegaConf.load(given).tracking.uri == "http://127.0.0.1:5000"


def grid(out_dir: Path, backend: str, jobs: int) -> list[str]:
    return ["strategies=[pfedhn,fedavg]", "seeds=[0]", "engine=inprocess", f"jobs={jobs}", f"out_dir={out_dir}",
            f"tracking={backend}", "sim.num_rounds=2", *TINY]  # fmt: skip


def test_a_grid_of_two_strategies_is_one_mlflow_experiment_with_a_tagged_run_per_cell(tmp_path):
    out = tmp_path / "cmp"

    assert compare.main(grid(out, "mlflow", jobs=2)) == 0  # two runs write to one SQLite store at once

    client = mlflow.MlflowClient(f"sqlite:///{out}/mlflow.db")
    assert sorted(e.name for e in client.search_experiments()) == ["Default", "cmp"]  # MLflow's own, and the grid
    runs = client.search_runs([client.get_experiment_by_name("cmp").experiment_id])
    tags = sorted(tuple(r.data.tags[k] for k in ("strategy", "setting", "seed", "variant")) for r in runs)
    assert tags == [("fedavg", "default", "0", "base"), ("pfedhn", "default", "0", "base")]
    for r in runs:
        run_dir = Path(r.data.tags["fedhyper.run_dir"])
        expected = [(row["round"], row["accuracy"]) for row in metric_rows(run_dir)]
        assert history(client, r.info.run_id, "accuracy") == expected
    # Tracking a grid or not names the same runs: a grid finished untracked is not run again.
    assert {r.label.run_dir for r in compare.plan(*compare.load_compare(grid(out, "none", jobs=2)))} == {
        Path(r.data.tags["fedhyper.run_dir"]) for r in runs
    }


def test_tensorboard_on_a_grids_folder_shows_its_runs_together_with_their_hparams(tmp_path):
    out = tmp_path / "cmp"

    assert compare.main(grid(out, "tensorboard", jobs=1)) == 0

    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(out))
    multiplexer.Reload()
    found = {}
    for name in multiplexer.Runs():
        acc = multiplexer.GetAccumulator(name)
        found[name] = (hparams(acc), [s for s, _ in scalars(acc, "accuracy")])
    assert sorted(found) == sorted(str(p.parent.relative_to(out)) for p in out.glob("runs/*/*/*/summary.json"))
    assert sorted(h["strategy"] for h, _ in found.values()) == ["fedavg", "pfedhn"]
    assert all(h["setting"] == "default" and h["variant"] == "base" and h["seed"] == "0" for h, _ in found.values())
    assert all(steps == [0, 1, 2] for _, steps in found.values())


def rest(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def mlflow_server(tmp_path):
    """An MLflow tracking server on 127.0.0.1 with its own SQLite store and artifact folder."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--artifacts-destination", str(tmp_path / "art"),
           "--workers", "1"]  # fmt: skip
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2).close()
            break
        except OSError:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            time.sleep(0.5)
    else:
        pytest.fail("the MLflow server did not answer within 120 s")
    yield base
    os.killpg(server.pid, 15)
    server.wait(timeout=30)
    log.close()


def test_a_run_tracked_on_an_mlflow_server_is_read_back_over_its_rest_api(tmp_path, mlflow_server):
    cfg = tiny("mlflow", mlflow_server, strategy="fedavg", rounds=2)
    cfg.tracking.experiment = "over-rest"

    run_experiment(cfg, tmp_path / "run")

    exp_id = rest(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=over-rest")["experiment"][
        "experiment_id"
    ]
    runs = rest(mlflow_server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]})["runs"]
    assert len(runs) == 1 and runs[0]["info"]["status"] == "FINISHED"
    run_id = runs[0]["info"]["run_id"]
    got = rest(mlflow_server, f"/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=accuracy")["metrics"]
    expected = [(r["round"], r["accuracy"]) for r in metric_rows(tmp_path / "run")]
    assert sorted((m["step"], m["value"]) for m in got) == expected
    files = rest(mlflow_server, f"/api/2.0/mlflow/artifacts/list?run_id={run_id}")["files"]
    assert {"config.yaml", "summary.json"} <= {f["path"] for f in files}


@pytest.mark.engine
def test_simulations_run_on_flower_and_ray_tracks_into_the_default_store_under_outputs(shared_run):
    store = shared_run.launch_dir / "outputs" / "mlflow.db"  # the launch directory's outputs/, as Hydra's run dirs
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    found = only_run(client, "fedhyper")
    assert found.info.status == "FINISHED"
    expected = [(r["round"], r["accuracy"]) for r in shared_run.rows if "accuracy" in r]
    assert [step for step, _ in expected] == list(range(0, ROUNDS + 1, 2))  # it evaluates every other round
    assert history(client, found.info.run_id, "accuracy") == expected
