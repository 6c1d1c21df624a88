"""TensorBoard: event files in the run directory; ``tensorboard --logdir <out_dir>`` shows a grid's runs together.

Every number of a ``metrics.jsonl`` row is a scalar at step = round. The run's labels (strategy,
seed, a grid's setting and variant) are its hparams, so TensorBoard's HParams tab filters and
compares runs by them; summary.json's numbers are scalars under ``summary/`` at the last step (the
HParams tab lists them beside the last value of each curve). The config and summary are text, the
figures images. A resumed run's new event file starts by purging every step from the resumed one
on, so TensorBoard shows each step once, as the resumed run computed it.
"""

from __future__ import annotations

import time
from pathlib import Path

from matplotlib import image
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams.api_pb2 import STATUS_FAILURE, STATUS_SUCCESS
from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME, SESSION_END_INFO_TAG
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

EVENTS_GLOB = "events.out.tfevents.*"
TEXT_SUFFIXES = (".yaml", ".json")  # files shown in the Text tab; .jsonl rows are the scalars already


def session_end(status: int) -> Summary:
    """The HParams tab's end of a run, with its status (torch's ``hparams`` writes success only)."""
    info = SessionEndInfo(status=status, end_time_secs=time.time())
    content = HParamsPluginData(session_end_info=info, version=PLUGIN_DATA_VERSION).SerializeToString()
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=content))
    return Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=metadata)])


class TensorBoardTracker:
    """A ``fedhyper.tracking.Tracker`` writing event files with torch's ``SummaryWriter``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.writer: SummaryWriter | None = None
        self.step = 0

    def start(self, params: dict[str, str], tags: dict[str, str], resume_step: int) -> int:
        first = resume_step if any(self.run_dir.glob(EVENTS_GLOB)) else 0  # no events yet: write them all
        self.writer = SummaryWriter(str(self.run_dir), purge_step=first)
        _, session_start, _ = hparams(dict(tags), {})
        if first == 0:
            self.writer.file_writer.add_summary(session_start)
        return first

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.step = max(self.step, step)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # visible to a running TensorBoard at once, not after flush_secs

    def log_summary(self, metrics: dict[str, float]) -> None:
        self.log_metrics(self.step, metrics)

    def log_artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            if path.suffix == ".png":
                pixels = image.imread(path)[..., :3]  # [height, width, RGB] in 0..1
                self.writer.add_image(path.stem, pixels, self.step, dataformats="HWC")
            elif path.suffix in TEXT_SUFFIXES:
                self.writer.add_text(path.name, f"```\n{path.read_text()}\n```", self.step)

    def close(self, failed: bool = False) -> None:
        self.writer.file_writer.add_summary(session_end(STATUS_FAILURE if failed else STATUS_SUCCESS))
        self.writer.close()
