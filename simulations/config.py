"""Hydra's ConfigStore: the library's dataclasses, one per config group, registered once."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from fedhyper.config import ExperimentConfig
from fedhyper.data import SPECS, DataConfig
from fedhyper.hnet.config import INPUTS, OUTPUTS
from fedhyper.models import ModelConfig
from fedhyper.tracking import BACKENDS, TrackingConfig
from strategies import registry

# Named data settings for simulations.compare: overrides applied before the command line's.
DATA_SETTINGS: dict[str, list[str]] = {
    "default": [],  # the experiment's defaults and the command line, nothing more
    "pfedhn": ["data.partition=pathological", "data.classes_per_client=2", "data.num_clients=50"],
    "dirichlet": ["data.partition=dirichlet", "data.alpha=0.3", "data.num_clients=100"],
    # Published protocols (docs/datasets.md): pFedHN's Table 1 at 50 clients, and FEMNIST by writer.
    "cifar10_pfedhn": [
        "data=cifar10",
        "data.partition=pathological",
        "data.classes_per_client=2",
        "data.num_clients=50",
    ],
    "cifar100_pfedhn": [
        "data=cifar100",
        "data.partition=pathological",
        "data.classes_per_client=10",
        "data.num_clients=50",
    ],
    "femnist_natural": ["data=femnist", "data.partition=natural", "data.num_clients=100"],
}
FEDHYPER_ABLATION: dict[str, list[str]] = {
    "fedhyper-no-private-head": ["strategy.private_head=false"],  # the hypernetwork generates the head too
    # evaluate the models as generated (and kept) and as FedAvg's server holds it: neither adapted nor fine-tuned
    "fedhyper-no-adapt": ["strategy.adapt_steps=0", "strategy.shared_adapt_steps=0"],
    "fedhyper-default-init": ["strategy.init=default"],  # PyTorch's initialisation, not hyperfan-in
    "fedhyper-sgd-outer": ["strategy.outer.optimizer=sgd", "strategy.outer.lr=0.01"],  # pFedHN's outer SGD
    "fedhyper-whole-round-step": ["strategy.clients_per_step=0"],  # one outer step over a round's clients, as pFedHN's
    "fedhyper-constant-lr": ["strategy.outer.schedule=constant"],  # Φ's learning rate does not decay
    "fedhyper-constant-local-lr": ["strategy.local.lr_schedule=constant"],  # the clients' learning rate does not decay
    "fedhyper-no-base": ["strategy.base=false"],  # the hypernetwork generates whole models, as pFedHN's does
    "fedhyper-no-grad-clip": ["strategy.local.max_grad_norm=0"],  # the clients' steps are not clipped
    # the generated model alone, all the local steps; the shared model's fine-tuning options unset, as they
    # were in the runs before them (they change nothing without the shared model)
    "fedhyper-no-shared-model": [
        "strategy.shared_model=false",
        "strategy.shared_adapt_steps=null",
        "strategy.shared_adapt_lr=null",
    ],  # fmt: skip
    # the shared model adapted as the generated one (adapt_steps at local.lr), not fine-tuned on its own terms
    "fedhyper-shared-adapted-alike": ["strategy.shared_adapt_steps=null", "strategy.shared_adapt_lr=null"],
}
# Named variants of a strategy's configuration for simulations.compare: the hypernetwork's design
# choices (fedhyper.hnet.config's registries), one input × one output each, then body and initialisation.
VARIANTS: dict[str, list[str]] = {
    "base": [],  # the experiment's defaults: runs are labelled by the strategy alone
    **{f"{i}-{o}": [f"hnet.input={i}", f"hnet.output={o}"] for i in INPUTS for o in OUTPUTS},
    "attention": ["hnet.body=attention", "hnet.output=chunked"],
    "hyperfan_in": ["hnet.init=hyperfan_in"],
    "hyperfan_out": ["hnet.init=hyperfan_out"],
    # strategy=fedhyper's ablation (docs/fedhyper.md): each removes one ingredient; they set
    # fedhyper's own options, so a grid with them runs strategies=[fedhyper] only.
    **FEDHYPER_ABLATION,
    # strategy=fedhyper's design attempts beyond its defaults (docs/fedhyper.md#what-was-measured)
    "fedhyper-mutual": ["strategy.mutual_weight=1.0"],  # its two models distil from each other (DML's weight)
}
ENGINES = ("inprocess", "flower")


@dataclass
class CompareConfig(ExperimentConfig):
    """A grid of runs (``python -m simulations.compare``): strategies × variants × data settings × seeds.

    The experiment's own keys (``data.*``, ``sim.*``, ``model.*``, ``hnet.*``, ``strategy.*``...)
    given on the command line apply to every run of the grid. A run's overrides, later ones
    winning: its setting's, its variant's, the command line's, then its strategy's
    (``strategy_overrides``). Settings and variants are named presets that the command line
    adjusts; a key that a chosen variant sets may not be set again by the command line or a
    strategy's overrides, which would make the variants the same run.
    """

    strategies: list[str] = field(default_factory=lambda: ["pfedhn"])  # names of registered strategies
    seeds: list[int] = field(default_factory=lambda: [0])  # every strategy × variant × setting runs once per seed
    settings: list[str] = field(default_factory=lambda: ["default"])  # names in setting_overrides
    # name -> overrides; add one with '+setting_overrides.mine=["data.alpha=0.1"]'.
    setting_overrides: dict[str, list[str]] = field(default_factory=lambda: dict(DATA_SETTINGS))
    variants: list[str] = field(default_factory=lambda: ["base"])  # names in variant_overrides
    # name -> overrides of every strategy's runs; add one with '+variant_overrides.wide=["hnet.hidden_dim=200"]'.
    variant_overrides: dict[str, list[str]] = field(default_factory=lambda: dict(VARIANTS))
    # strategy -> overrides for its runs only, e.g. '+strategy_overrides.pfedhn=["hnet.hidden_dim=50"]'.
    strategy_overrides: dict[str, list[str]] = field(default_factory=dict)
    # inprocess: the real ServerApp and ClientApp in one process per run, no SuperLink or Ray (fast, parallel);
    # flower: each run through python -m simulations.run (a private SuperLink and Ray, one run at a time).
    engine: str = "inprocess"
    jobs: int = 0  # runs at once with engine=inprocess; 0: one per CPU core
    out_dir: str = "outputs/compare"  # repeating a command with the same out_dir skips finished runs
    # where results.csv, report.md, settled.yaml and the plots go, relative to out_dir ("": out_dir itself):
    # a second grid over the same runs and tuning (an ablation beside its comparison) keeps its own report.
    report_dir: str = ""
    # the run label (strategy, or strategy/variant) that the report's paired differences are taken to;
    # "": each label to the best other. An ablation sets its full method (reference=fedhyper).
    reference: str = ""
    # tune=N: before the grid, N trials per strategy × variant × setting (seed 0, tune_rounds rounds,
    # the test split unread), chosen on validation accuracy; the choices go to tuned.yaml and every run.
    tune: int = 0
    tune_rounds: int = 0  # rounds per trial; 0: a quarter of the cell's sim.num_rounds
    target_accuracy: float = 0.9  # the report's "rounds to target"
    # true: write results.csv, report.md and plots from the runs finished so far, run nothing (a grid
    # still running elsewhere, or interrupted); with tune=N a cell whose tuning has not ended is left out
    # (the report names it), and with none ended there is nothing to report (exit status 1).
    report_only: bool = False
    # true: after the runs, each strategy's evaluation-only options (its eval_space: fine-tuning and
    # adaptation before evaluating; then its eval_then, FedHyper's ensemble weight, with that choice fixed)
    # are chosen on seed 0's final checkpoint by validation accuracy and every seed's final checkpoint is
    # evaluated with them (simulations/reevaluation.py); settled.yaml
    # and a section of report.md hold them. Runs need sim.checkpoint_every to keep their last checkpoint,
    # engine=inprocess (its checkpoints hold the clients' kept state) and a validation split; a finished
    # run whose final checkpoint an evaluation not kept needs and is not here (checkpoints are not
    # committed: another machine) is run again first; a run whose checkpoint cannot be
    # evaluated is named in the report, not fatal.
    settle: bool = False
    progress_every: float = 30.0  # seconds between progress lines


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=ExperimentConfig)
    cs.store(name="base_compare", node=CompareConfig)
    for entry in registry.REGISTRY.values():
        cs.store(group="strategy", name=entry.name, node=entry.config_cls)
    for spec in SPECS.values():
        cs.store(group="data", name=spec.name, node=DataConfig(name=spec.name))
    cs.store(group="model", name="cnn", node=ModelConfig(name="cnn"))
    cs.store(group="model", name="mlp", node=ModelConfig(name="mlp"))
    for backend in BACKENDS:
        cs.store(group="tracking", name=backend, node=TrackingConfig(backend=backend))
