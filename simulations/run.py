"""Run one simulation: ``python -m simulations.run [hydra overrides]``.

Resolves the Hydra config, checks it before any engine starts (a bad option exits with
status 2 and one line naming it), writes ``config.yaml`` into the run directory and runs
the Flower App there on a private SuperLink and Ray instance. The ServerApp writes
``metrics.jsonl`` and ``summary.json`` beside it.
"""

from __future__ import annotations

import atexit
import sys

from simulations import processes, ray_head

# The launch's Ray head starts first and imports Ray on the core this process leaves idle while it
# imports torch and the strategies and composes the config below (about 1.5 s); run_app then orders
# it to start Ray and the client actors, or cancels it; at exit it is cancelled if nothing took it.
# Only as ``python -m simulations.run``: ``fedhyper-run`` imports this module first, and its launch
# starts the head once the config is known, as any other caller of run_app does.
BEFORE_CONFIG = (
    ray_head.start_before_config(sys.argv[1:], processes.new_launch_id()) if __name__ == "__main__" else None
)
if BEFORE_CONFIG is not None:
    atexit.register(BEFORE_CONFIG.cancel)

import json
import logging
import signal
from pathlib import Path

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from fedhyper import checkpoint, record, tracking
from fedhyper.config import ExperimentConfig
from fedhyper.data import get_spec
from fedhyper.data.hub import check_root
from fedhyper.device import select_device
from simulations import multirun
from simulations.config import register_configs
from simulations.launch import SimulationSpec, run_app
from strategies import experiment

log = logging.getLogger("fedhyper")
CONF_DIR = Path(__file__).resolve().parent / "conf"
register_configs()


def check_group_choices(argv: list[str]) -> None:
    """Refuse an unknown ``strategy=`` / ``data=`` / ``model=`` / ``tracking=`` before Hydra composes anything."""
    store = ConfigStore.instance()
    overrides = OverridesParser.create().parse_overrides([a for a in argv if "=" in a and not a.startswith("-")])
    for o in overrides:
        group = o.key_or_group
        if group in ("strategy", "data", "model", "tracking") and not o.is_delete():
            known = sorted(name.removesuffix(".yaml") for name in store.list(group))
            if str(o.value()) not in known:
                raise ValueError(f"{group}={o.value()!r} is unknown; choose one of {', '.join(known)}")


def precheck(argv: list[str], config_name: str = "config") -> DictConfig:
    """Compose the config once before Hydra's own run, turning any error into one line; return it."""
    check_group_choices(argv)
    overrides = [a for a in argv if "=" in a and not a.startswith(("-", "hydra.", "+hydra.", "hydra/"))]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        try:
            return compose(config_name=config_name, overrides=overrides)
        except Exception as err:  # Hydra and OmegaConf raise many types; the user needs one line
            cause = err.__cause__ or err
            key = getattr(cause, "full_key", None)
            first = str(cause).strip().splitlines()[0]
            raise ValueError(f"{key}: {first}" if key else first) from err


def check_machine(cfg: ExperimentConfig) -> None:
    """What the config asks of this machine: a GPU, readable data files."""
    select_device(cfg.device)
    if cfg.sim.client_gpus > 0 and cfg.sim.ray_address == "local" and not torch.cuda.is_available():
        raise ValueError(f"sim.client_gpus={cfg.sim.client_gpus} asks for a GPU and this machine has none; set it to 0")
    if cfg.data.root is not None:  # a missing, empty or misshapen copy fails here, not in every client
        owners = check_root(get_spec(cfg.data.name), cfg.data.root)
        if cfg.data.partition == "natural" and owners is not None and cfg.data.num_clients > owners:
            raise ValueError(f"data.num_clients={cfg.data.num_clients} exceeds the {owners} writers in data.root")


def validated(raw: DictConfig) -> ExperimentConfig:
    """The typed config, after every check that needs no engine (options, the machine, data files)."""
    cfg = experiment.typed(raw)
    cfg.resume = None
    cfg.validate()
    check_machine(cfg)
    return cfg


def check(argv: list[str]) -> ExperimentConfig:
    """Every check ``python -m simulations.run argv`` makes before it starts an engine, in this process."""
    return validated(precheck(argv))


def prepare(raw: DictConfig, run_dir: Path) -> tuple[Path, SimulationSpec, dict[str, str | bool]]:
    """Validate the config, write it to the run directory and describe the Flower run for it.

    With ``resume=<run dir>`` the run directory, its config and its checkpoint are reused.
    """
    resume = raw.get("resume")
    if resume:
        run_dir = Path(resume).expanduser().resolve()
        if not (run_dir / record.CONFIG_FILE).is_file():
            raise ValueError(f"resume={resume} holds no config.yaml; give the directory of an earlier run")
        raw = experiment.recorded(run_dir / record.CONFIG_FILE)
        checkpoint.load_checkpoint(run_dir / checkpoint.FILENAME)
    cfg = validated(raw)
    cfg.tracking = tracking.with_store(cfg.tracking, tracking.OUTPUTS)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / record.CONFIG_FILE
    OmegaConf.save(OmegaConf.structured(cfg), config_file)
    spec = SimulationSpec(
        run_dir=run_dir,
        num_supernodes=cfg.data.num_clients,
        client_cpus=cfg.sim.client_cpus,
        client_gpus=cfg.sim.client_gpus,
        ray_address=cfg.sim.ray_address,
        sweep_interval=cfg.sim.sweep_interval,
    )
    run_config = {
        experiment.RUN_CONFIG_FILE: str(config_file),
        experiment.RUN_DIR: str(run_dir),
        experiment.RUN_RESUME: bool(resume),
    }
    return run_dir, spec, run_config


def _head_started_before_config() -> ray_head.Started | None:
    """The Ray head this command started before its config (once: a later run of the process starts its own)."""
    global BEFORE_CONFIG
    head, BEFORE_CONFIG = BEFORE_CONFIG, None
    return head


class RunFailed(Exception):
    """A run that could not start (``code`` 2: a bad option) or did not finish (1)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def simulate(raw: DictConfig, run_dir: Path) -> dict:
    """Check the config, run the simulation in ``run_dir`` and return its summary; RunFailed otherwise."""
    try:
        run_dir, spec, run_config = prepare(raw, run_dir)
    except (ValueError, FileNotFoundError) as err:
        raise RunFailed(f"config error: {err}", 2) from err
    # SIGTERM (a scheduler, `kill`) cleans up like Ctrl-C does; SIGINT is set too because a
    # process started from a shell's background job inherits it ignored.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = run_app(spec, run_config, head=_head_started_before_config())
    except KeyboardInterrupt:
        print(f"interrupted; every process the run started is stopped. Outputs so far in {run_dir}", file=sys.stderr)
        sys.exit(130)
    summary_file = run_dir / record.SUMMARY_FILE
    if code != 0 or not summary_file.exists():
        raise RunFailed(f"the run failed (flwr exit code {code}); logs in {run_dir}", 1)
    return json.loads(summary_file.read_text())


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")  # absolute: works when imported too
def main(raw: DictConfig) -> float:
    """One simulation, or one job of a ``--multirun`` sweep; returns its validation accuracy.

    Hydra's sweepers (``hydra/sweeper=optuna``) optimise the returned value. In a sweep, a job
    that fails is reported, returns NaN (a failed trial to Optuna) and the sweep goes on.
    """
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir).resolve()
    try:
        summary = simulate(raw, run_dir)
    except RunFailed as err:
        print(err, file=sys.stderr)
        if hc.mode != RunMode.MULTIRUN:
            sys.exit(err.code)
        multirun.FAILED.add(f"job {hc.job.num} ({' '.join(hc.overrides.task)})", str(err))
        return float("nan")
    shown = {k: v for k, v in summary.items() if k != "per_client_accuracy"}
    print("summary:", json.dumps(shown, indent=2))
    print(f"outputs in {run_dir}")
    val = summary.get("val_accuracy")
    return float("nan") if val is None else float(val)


def cli() -> None:
    """``fedhyper-run`` and ``python -m simulations.run``: a bad option is one line (status 2) before Hydra starts.

    With ``--multirun`` every value of every sweep is checked first; the command exits 1 when a job failed.
    """
    argv = sys.argv[1:]
    try:
        for point in multirun.sweep_points(argv) if multirun.is_multirun(argv) else [argv]:
            precheck(point)
    except ValueError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = multirun.with_sweeper_defaults(argv)
    main()
    if multirun.FAILED.lines:
        print(multirun.FAILED.report(), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli()
