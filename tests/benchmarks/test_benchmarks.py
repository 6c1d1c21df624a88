"""Each benchmark still runs, at a tiny size; its figures are measured in benchmarks/, not here."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_module(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_hypernet_update_benchmark_reports_a_ratio():
    out = run_module("benchmarks.hypernet_update", "--clients", "3", "--target", "fmnist", "--repeats", "1")

    ratio = float(re.search(r"median ratio ([0-9.]+)x", out).group(1))
    assert ratio > 0


def test_round_overhead_benchmark_reports_both_ratios():
    out = run_module(
        "benchmarks.round_overhead",
        *("--clients", "4", "--per-round", "2", "--rounds", "5", "--steps", "2", "--subset", "2000", "--repeats", "1"),
    )

    match = re.search(r"flower/in-process = ([0-9.]+) \(same parallelism\), ([0-9.]+)", out)
    assert match and float(match.group(1)) > 0 and float(match.group(2)) > 0
