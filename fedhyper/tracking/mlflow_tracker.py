"""MLflow: one tracked run per fedhyper run, in a local SQLite store or on a tracking server.

Params are the flattened resolved config, tags the run's labels (strategy, seed, a grid's setting
and variant), metrics every number of ``metrics.jsonl`` at step = round and summary.json's numbers
under ``summary/``; the run's files are artifacts. The tracked run's id is kept in the run
directory (``tracking.json``), so a resumed run continues it, skipping the steps it already holds.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from fedhyper.tracking import SUMMARY_PREFIX

log = logging.getLogger("fedhyper")
RUN_FILE = "tracking.json"  # {"mlflow_run_id": ..., "uri": ...} in the run directory
ARTIFACTS_DIR = "mlartifacts"  # beside a local store's SQLite file
RUN_DIR_TAG = "fedhyper.run_dir"
PROBE_TIMEOUT = 5.0  # seconds a tracking server has to answer before the run goes on untracked


def reachable_client(uri: str) -> MlflowClient:
    """A client of ``uri``; ConnectionError at once when a tracking server does not answer.

    MLflow's own client retries a dead server for minutes before it fails; one short probe spares
    the run that wait.
    """
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT).close()
        except urllib.error.HTTPError:
            pass  # it answered; whether it is MLflow, its API will tell
        except OSError as err:
            raise ConnectionError(f"the MLflow tracking server at {uri} cannot be reached ({err})") from err
    return MlflowClient(tracking_uri=uri)


def artifact_root(uri: str) -> str | None:
    """Where a local SQLite store keeps artifacts (beside its file); None: the server or store decides."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACTS_DIR).resolve().as_uri()


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (or restored from MLflow's bin) when needed."""
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_root(client.tracking_uri))
        except MlflowException:  # another run of the grid created it first
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


class MlflowTracker:
    """A ``fedhyper.tracking.Tracker`` writing through ``MlflowClient`` (no global active run)."""

    def __init__(self, uri: str, experiment: str, run_dir: Path, name: str) -> None:
        self.uri, self.experiment, self.run_dir, self.name = uri, experiment, Path(run_dir), name
        self.client: MlflowClient | None = None
        self.run_id = ""
        self.logged_through = -1  # steps up to this one are already in the tracked run
        self.step = 0  # the last step seen: the summary's

    def start(self, params: dict[str, str], tags: dict[str, str], resume_step: int) -> int:
        self.client = reachable_client(self.uri)
        exp = experiment_id(self.client, self.experiment)
        earlier = self._earlier_run()
        if earlier and resume_step > 0:
            self.run_id, self.logged_through = earlier, self._last_step(earlier)
            self.client.update_run(earlier, status="RUNNING")
            log.info("tracking: continuing MLflow run %s after step %d", earlier, self.logged_through)
            return min(self.logged_through + 1, resume_step)
        if earlier:  # this directory's run starts again from round 0: its earlier record is replaced
            self.client.delete_run(earlier)
        run = self.client.create_run(exp, run_name=self.name, tags={**tags, RUN_DIR_TAG: str(self.run_dir.resolve())})
        self.run_id = run.info.run_id
        (self.run_dir / RUN_FILE).write_text(json.dumps({"mlflow_run_id": self.run_id, "uri": self.uri}))
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])
        log.info("tracking: MLflow run %s in experiment %r at %s", self.run_id, self.experiment, self.uri)
        return 0

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.step = max(self.step, step)
        if step > self.logged_through:
            self._log(step, metrics)

    def log_summary(self, metrics: dict[str, float]) -> None:
        self._log(self.step, metrics)

    def log_artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")

    def _log(self, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def _earlier_run(self) -> str:
        """The id of this run directory's tracked run in this store, if it has one that is not deleted."""
        path = self.run_dir / RUN_FILE
        if not path.is_file():
            return ""
        run_id = json.loads(path.read_text()).get("mlflow_run_id", "")
        if not run_id:
            return ""
        try:
            run = self.client.get_run(run_id)
        except MlflowException:  # another store, or gone
            return ""
        return run_id if run.info.lifecycle_stage == "active" else ""

    def _last_step(self, run_id: str) -> int:
        keys = [k for k in self.client.get_run(run_id).data.metrics if not k.startswith(SUMMARY_PREFIX)]
        return max((m.step for k in keys for m in self.client.get_metric_history(run_id, k)), default=-1)
