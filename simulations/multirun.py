"""``python -m simulations.run --multirun``: checking a sweep before it starts, and its failed jobs.

Hydra runs one job per point of the sweep (``strategy=fedavg,ditto seed=0,1,2``, or the trials
of a sweeper such as Optuna's). Before the first job starts, every value a sweep lists is
checked like a single run's options are (a bad one exits 2 with one line); an interval, which
a sweeper samples, is checked at both ends. A job that fails once running is reported and the
sweep goes on; the command exits 1 at the end if any job failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override

MULTIRUN_FLAGS = ("-m", "--multirun")
OPTUNA = "hydra/sweeper=optuna"


def is_multirun(argv: list[str]) -> bool:
    return any(a in MULTIRUN_FLAGS for a in argv)


def _values(o: Override) -> list[str]:
    """The values a sweep override stands for, as override text: each listed value, or an interval's ends."""
    if not o.is_sweep_override():
        return [o.get_value_element_as_str()]
    sweep = o.value()
    if isinstance(sweep, IntervalSweep):
        ends = (sweep.start, sweep.end)
        return [str(v) if isinstance(v, int) else repr(float(v)) for v in ends]
    return list(o.sweep_string_iterator())


def sweep_points(argv: list[str]) -> Iterator[list[str]]:
    """Overrides to check for a command line: itself without sweeps, and each swept value in turn.

    The first point takes every sweep's first value; each further point changes one sweep to one
    of its other values, so every value is composed once alongside valid choices of the rest.
    """
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(args)
    values = [_values(o) for o in parsed]
    keys = [o.get_key_element() for o in parsed]
    first = [f"{k}={v[0]}" for k, v in zip(keys, values, strict=True)]
    yield first
    for i, (key, options) in enumerate(zip(keys, values, strict=True)):
        for value in options[1:]:
            yield [*first[:i], f"{key}={value}", *first[i + 1 :]]


def with_sweeper_defaults(argv: list[str]) -> list[str]:
    """Optuna's sweeper minimises by default; a run returns validation accuracy, so maximise it unless told."""
    if OPTUNA in argv and not any(a.startswith("hydra.sweeper.direction=") for a in argv):
        return [*argv, "hydra.sweeper.direction=maximize"]
    return argv


@dataclass
class FailedJobs:
    """Jobs of this process's sweep that failed once running: reported at the end, the others go on."""

    lines: list[str] = field(default_factory=list)

    def add(self, job: str, reason: str) -> None:
        self.lines.append(f"{job}: {reason}")

    def report(self) -> str:
        return f"{len(self.lines)} jobs of the sweep failed:\n" + "\n".join(f"  {line}" for line in self.lines)


FAILED = FailedJobs()
