"""Run one simulation: ``python -m simulations.run [hydra overrides]``.

Resolves the Hydra config, checks it before any engine starts (a bad option exits with
status 2 and one line naming it), writes ``config.yaml`` into the run directory and runs
the Flower App there on a private SuperLink and Ray instance. The ServerApp writes
``metrics.jsonl`` and ``summary.json`` beside it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from simulations.config import register_configs
from simulations.launch import SimulationSpec, run_app
from strategies import experiment

log = logging.getLogger("fedhyper")
register_configs()


def check_group_choices(argv: list[str]) -> None:
    """Refuse an unknown ``strategy=`` / ``data=`` / ``model=`` before Hydra composes anything."""
    store = ConfigStore.instance()
    overrides = OverridesParser.create().parse_overrides([a for a in argv if "=" in a and not a.startswith("-")])
    for o in overrides:
        group = o.key_or_group
        if group in ("strategy", "data", "model") and not o.is_delete():
            known = sorted(name.removesuffix(".yaml") for name in store.list(group))
            if str(o.value()) not in known:
                raise ValueError(f"{group}={o.value()!r} is unknown; choose one of {', '.join(known)}")


def prepare(raw: DictConfig, run_dir: Path) -> tuple[SimulationSpec, dict[str, str]]:
    """Validate the config, write it to ``run_dir`` and describe the Flower run for it."""
    cfg = experiment.typed(raw)
    cfg.validate()
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "config.yaml"
    OmegaConf.save(OmegaConf.structured(cfg), config_file)
    spec = SimulationSpec(
        run_dir=run_dir,
        num_supernodes=cfg.data.num_clients,
        client_cpus=cfg.sim.client_cpus,
        client_gpus=cfg.sim.client_gpus,
        ray_address=cfg.sim.ray_address,
    )
    run_config = {experiment.RUN_CONFIG_FILE: str(config_file), experiment.RUN_DIR: str(run_dir)}
    return spec, run_config


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(raw: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir).resolve()
    try:
        spec, run_config = prepare(raw, run_dir)
    except (ValueError, FileNotFoundError) as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    code = run_app(spec, run_config)
    summary_file = run_dir / "summary.json"
    if code != 0 or not summary_file.exists():
        print(f"the run failed (flwr exit code {code}); logs in {run_dir}", file=sys.stderr)
        sys.exit(1)
    summary = json.loads(summary_file.read_text())
    shown = {k: v for k, v in summary.items() if k != "per_client_accuracy"}
    print("summary:", json.dumps(shown, indent=2))
    print(f"outputs in {run_dir}")


if __name__ == "__main__":
    try:
        check_group_choices(sys.argv[1:])
    except ValueError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
