"""Start-up of a Flower simulation: command -> first round's log line, and -> exit, today's launch path vs an older one.

``python -m benchmarks.startup [--repeats 3] [--baseline REV] [--clients 50]`` runs
``python -m simulations.run`` in this checkout and in a git worktree of ``REV`` (each with its
own code first on PYTHONPATH), alternately, ``--repeats`` times each, one round of the default
experiment at ``--clients`` clients. It timestamps the launcher's output: when ``flwr`` reports
the run submitted, when the first ``round R/N`` line appears (round 0, the evaluation of every
client before training), and when the command exits. Medians per launch path, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The launch path before issue 16's start-up work: the last commit before it whose simulation runs
# (the commits after it and before the work changed strategies/ and tracking, not the launch).
BASELINE = "768cc48"
MARKS = {"submitted": re.compile(r"Successfully started run"), "first_round": re.compile(r"\| round \d+/\d+")}


def time_run(checkout: Path, run_dir: Path, overrides: list[str]) -> dict[str, float]:
    """Seconds from the command's start to each mark and to its exit; a failed run raises."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}  # this checkout's packages before the editable install's
    cmd = [sys.executable, "-m", "simulations.run", *overrides, f"hydra.run.dir={run_dir}"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict[str, float] = {}
    tail: list[str] = []
    for line in proc.stdout:
        for name, pattern in MARKS.items():
            if name not in seen and pattern.search(line):
                seen[name] = time.monotonic() - start
        tail = (tail + [line])[-30:]
    seen["exit"] = time.monotonic() - start
    if proc.wait() != 0 or len(seen) != len(MARKS) + 1:
        raise RuntimeError(f"{' '.join(cmd)} in {checkout} failed ({proc.returncode}):\n{''.join(tail)}")
    return seen


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached git worktree of ``rev``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="startup-baseline-") as tmp:
        path = Path(tmp) / "tree"
        add = ["git", "worktree", "add", "--detach", str(path), rev]
        subprocess.run(add, cwd=REPO, check=True, capture_output=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, capture_output=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the launch path to compare with")
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args(argv)
    overrides = [f"data.num_clients={args.clients}", "sim.num_rounds=1"]
    times: dict[str, list[dict[str, float]]] = {args.baseline: [], "current": []}
    with worktree(args.baseline) as old, tempfile.TemporaryDirectory() as tmp:
        checkouts = {args.baseline: old, "current": REPO}
        for repeat in range(args.repeats):
            for name, checkout in checkouts.items():
                times[name].append(time_run(checkout, Path(tmp) / f"{name}-{repeat}", overrides))
                print(name, repeat, {k: round(v, 2) for k, v in times[name][-1].items()}, flush=True)
    medians = {name: {k: statistics.median(t[k] for t in runs) for k in runs[0]} for name, runs in times.items()}
    for name, median in medians.items():
        print(f"median {name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in median.items()))
    for k in medians["current"]:
        print(f"ratio current/{args.baseline} {k}: {medians['current'][k] / medians[args.baseline][k]:.2f}")


if __name__ == "__main__":
    main()
