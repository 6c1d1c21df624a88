"""A Flower/Ray simulation with many clients: round time and the memory of each process.

    python -m benchmarks.many_clients [--clients 10000 --per-round 50 --rounds 20]
    python -m benchmarks.many_clients --tiny                       # seconds (CI)

Runs ``python -m simulations.run`` on a Dirichlet partition of Fashion-MNIST (alpha 0.3, so
about seven examples a client at 10,000 clients) and watches the run's processes: the peak
resident memory (VmHWM) of the process that holds the ServerApp (``flwr-simulation``) and of
the largest client process (a Ray ``ClientAppActor``). Round times come from the run's
``metrics.jsonl``; the last round also evaluates every client, and its extra time is
reported apart.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.simrun import run_simulation
from simulations.launch import run_processes
from simulations.processes import alive, with_descendants

WARMUP = 2


def peak_rss_mb(pid: int) -> tuple[str, float] | None:
    """(command line, VmHWM in MB) of a live process, or None once it is gone."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return cmd, kib / 1024


def watch(proc: subprocess.Popen, flwr_home: Path, every: float = 1.0) -> dict:
    """Peak memory of the ServerApp's process and of the largest client process until ``proc`` ends.

    A process once found is followed by its pid, and so are its descendants, as the launcher's own
    stop does (``processes._terminate``): Ray's workers rewrite their environment for their titles,
    and are the run's only through an ancestor that carries its mark.
    Also ``titles`` (each title's processes and the polls that saw one: a Ray worker's title, or
    the program a process runs), ``polls`` and ``longest_poll_s``, to say what ran when no client
    process was found.
    """
    peaks = {"server_peak_rss_mb": 0.0, "client_peak_rss_mb": 0.0, "client_processes": 0}
    clients: set[int] = set()
    followed: set[int] = set()
    titles: dict[str, tuple[set[int], int]] = {}
    polls, longest = 0, 0.0
    while proc.poll() is None:
        start = time.monotonic()
        followed = with_descendants(set(run_processes(flwr_home)) | {pid for pid in followed if alive(pid)})
        seen_now: set[str] = set()
        for pid in sorted(followed):
            seen = peak_rss_mb(pid)
            if seen is None:
                continue
            cmd, mb = seen
            name = title(cmd)
            titles.setdefault(name, (set(), 0))[0].add(pid)
            seen_now.add(name)
            if "flwr_simulation" in cmd.replace("-", "_"):  # Flower's flwr-simulation or the launcher's own entry
                peaks["server_peak_rss_mb"] = max(peaks["server_peak_rss_mb"], mb)
            elif "ClientAppActor" in cmd:
                clients.add(pid)
                peaks["client_peak_rss_mb"] = max(peaks["client_peak_rss_mb"], mb)
        for name in seen_now:
            titles[name] = (titles[name][0], titles[name][1] + 1)
        polls += 1
        longest = max(longest, time.monotonic() - start)
        time.sleep(every)
    peaks["client_processes"] = len(clients)
    counts = {name: (len(pids), n) for name, (pids, n) in sorted(titles.items())}
    return {**peaks, "titles": counts, "polls": polls, "longest_poll_s": longest}


def title(cmd: str) -> str:
    """A short name for a command line: a Ray worker's title (``ray::ClientAppActor``), else its program.

    A Python program is named with its module (``-m``) or script.
    """
    if cmd.startswith("ray::"):
        return cmd.split()[0].split(".")[0]
    words = cmd.split() or ["?"]
    program = Path(words[0]).name
    if not program.startswith("python"):
        return program
    if "-m" in words[1:-1]:
        return f"{program} {words[words.index('-m') + 1]}"
    script = next((word for word in words[1:] if not word.startswith("-")), "")
    return f"{program} {Path(script).name}".strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--steps", type=int, help="local steps (default: strategy.local.steps)")
    parser.add_argument("--max-embedding-dim", type=int, help="hnet.max_embedding_dim (default: the library's, 64)")
    parser.add_argument("--eval-clients", type=int, default=0, help="sim.eval_clients (0: evaluate every client)")
    parser.add_argument("--subset", type=int)
    parser.add_argument("--client-cpus", type=int, help="sim.client_cpus: CPUs per client process (default: 1)")
    parser.add_argument("--tiny", action="store_true", help="40 clients on a data subset (CI)")
    args = parser.parse_args()
    if args.tiny:
        args.clients, args.per_round, args.rounds, args.steps, args.subset = 40, 4, 4, 2, 2000
    overrides = [
        "data.partition=dirichlet",
        f"data.alpha={args.alpha}",
        f"data.num_clients={args.clients}",
        f"sim.clients_per_round={args.per_round}",
        f"sim.num_rounds={args.rounds}",
        f"sim.eval_every={args.rounds + 1}",  # only the last round evaluates
    ]
    overrides += [f"strategy.local.steps={args.steps}"] if args.steps else []
    overrides += [f"hnet.max_embedding_dim={args.max_embedding_dim}"] if args.max_embedding_dim else []
    overrides += [f"sim.eval_clients={args.eval_clients}"] if args.eval_clients else []
    overrides += [f"data.subset={args.subset}"] if args.subset else []
    overrides += [f"sim.client_cpus={args.client_cpus}"] if args.client_cpus else []
    peaks: dict = {}
    record = run_simulation(overrides, watch=lambda proc, home: peaks.update(watch(proc, home)))
    summary, ends = record.summary, record.round_ends()
    times = [ends[r] - ends[r - 1] for r in range(1 + WARMUP, args.rounds) if r - 1 in ends]
    round_s = statistics.median(times) if times else float("nan")
    last = ends[args.rounds] - ends[args.rounds - 1] if args.rounds - 1 in ends else float("nan")
    print(f"{args.clients} clients, {args.per_round} a round, {args.rounds} rounds: command {record.command_s:.0f}s "
          f"(ServerApp {summary['wall_time_s']:.0f}s, the rest start-up and shutdown)")  # fmt: skip
    evaluated = f"{args.eval_clients} sampled clients" if args.eval_clients else "every client"
    print(f"steady-state round {round_s:.2f}s (median of {len(times)}); last round with the evaluation of {evaluated} "
          f"{last:.1f}s; final mean accuracy {summary['final_accuracy']:.4f}")  # fmt: skip
    print(f"peak RSS: ServerApp process {peaks['server_peak_rss_mb']:.0f} MB, largest of "
          f"{peaks['client_processes']} client processes {peaks['client_peak_rss_mb']:.0f} MB")  # fmt: skip
    if not peaks["client_processes"]:  # say what ran instead, and what the launch said of it
        found = ", ".join(f"{name} ({n}, {k})" for name, (n, k) in peaks["titles"].items())
        print(f"no client process found in {peaks['polls']} polls (the longest {peaks['longest_poll_s']:.1f}s); "
              f"the run's processes by title (processes, polls that saw one): {found}")  # fmt: skip
        said = [line for line in record.log.splitlines() if "WARNING" in line or "ERROR" in line]
        print("the launcher's warnings and errors:", *said[-20:] or ["none"], sep="\n  ")


if __name__ == "__main__":
    main()
