"""The comparison's Markdown: a table per data setting (mean ± std over seeds) and the whole report.

Reads ``fedhyper.results``'s grouped runs; accuracies are fractions there and percentages here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from fedhyper import record
from fedhyper.results import (
    BASE_VARIANT,
    GroupSummary,
    PairedDifference,
    RunResult,
    Stat,
    paired_differences,
    run_label,
    summarise,
)
from simulations.reevaluation import SETTLE_SEED, Settled


def _shown(s: Stat, fmt: Callable[[float], str]) -> str:
    """``mean ± std``; the mean alone from one seed; a dash when nothing was measured."""
    if s.mean is None:
        return "–"
    return fmt(s.mean) if s.std is None else f"{fmt(s.mean)} ± {fmt(s.std)}"


def pct(s: Stat) -> str:
    return _shown(s, lambda v: f"{100 * v:.2f}")


def _of_seeds(s: Stat) -> str:
    """`` (k/n)`` where only k of the n seeds have the value, else nothing."""
    return "" if s.count == s.n else f" ({s.count}/{s.n})"


def _rounds(s: Stat) -> str:
    if s.mean is None:
        return f"not reached (0/{s.n})"
    return _seconds(s) + _of_seeds(s)


def _seconds(s: Stat) -> str:
    return _shown(s, lambda v: f"{v:.1f}")


def _cpu_seconds(s: Stat) -> str:
    """CPU time over the seeds that counted it, naming how many of them did when not all."""
    return "–" if s.mean is None else _seconds(s) + _of_seeds(s)


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _traffic(s: Stat) -> str:
    return _shown(s, human_bytes)


def _count(s: Stat) -> str:
    return "–" if s.mean is None else str(round(s.mean))  # the same for every seed of a config


# Columns that a table shows only when some of its runs wrote them: header, field, format.
_OPTIONAL_COLUMNS: list[tuple[str, str, Callable[[Stat], str]]] = [
    ("final pooled (%)", "final_accuracy_pooled", pct),
    ("validation (%)", "val_accuracy", pct),
    ("novel accuracy (%)", "novel_accuracy", pct),
    ("generalization gap (pp)", "generalization_gap", pct),
    ("hnet parameters", "hnet_parameters", _count),
]


def markdown_table(groups: Sequence[GroupSummary], target: float) -> str:
    """One Markdown table: a row per strategy and variant, mean ± std across its seeds."""
    optional = [c for c in _OPTIONAL_COLUMNS if any(getattr(g, c[1]).count for g in groups)]
    cpu = any(g.cpu_time_s.count for g in groups)  # in-process runs recorded since it was counted
    head = [
        "strategy" if all(g.variant == BASE_VARIANT for g in groups) else "strategy/variant",
        "seeds",
        "final accuracy (%)",
        "best accuracy (%)",
        *(name for name, _, _ in optional),
        f"rounds to {100 * target:g}%",
        "wall time (s)",
        *(["CPU time (s)"] if cpu else []),
        "sent / round",
        "received / round",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [
            run_label(g.strategy, g.variant),
            str(len(g.seeds)),
            pct(g.final_accuracy),
            pct(g.best_accuracy),
            *(fmt(getattr(g, key)) for _, key, fmt in optional),
            _rounds(g.rounds_to_target),
            _seconds(g.wall_time_s),
            *([_cpu_seconds(g.cpu_time_s)] if cpu else []),
            _traffic(g.train_bytes_sent_per_round),
            _traffic(g.train_bytes_received_per_round),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(differences: Sequence[PairedDifference], reference: str = "") -> list[str]:
    """Lines of the table of each label's paired difference to the best other label, or to ``reference`` (pp)."""
    if not differences:
        return []
    whom = "the best other strategy"
    if reference and any(d.reference == reference for d in differences):
        whom = f"{reference}'s (the best other's, for {reference} itself)"
    lines = [
        "",
        f"Final accuracy minus that of {whom}, paired by seed (percentage points; "
        "± the half-width of the 95% t-interval over seeds):",
        "",
        "| strategy | compared with | difference (pp) | seeds |",
        "|---|---|---|---|",
    ]
    for d in sorted(differences, key=lambda d: -d.mean):
        spread = "" if d.half_width is None else f" ± {100 * d.half_width:.2f}"
        lines.append(f"| {d.label} | {d.reference} | {100 * d.mean:+.2f}{spread} | {d.seeds} |")
    return lines


def on_gpu(results: Sequence[RunResult]) -> list[str]:
    """A line naming the runs whose clients trained on a GPU, if any: their wall times are another machine's."""
    gpu = sorted((r for r in results if r.gpu_training_share), key=lambda r: (r.label, r.seed))
    if not gpu:
        return []
    unknown = sum(r.gpu_training_share is None for r in results)
    names = ", ".join(f"{r.label} seed {r.seed} ({100 * r.gpu_training_share:.0f}%)" for r in gpu)
    return ["", f"Runs whose clients trained on a GPU (share of their training replies), wall times not comparable "
                f"with the others': {names}." + (f" {unknown} runs do not record it." if unknown else "")]  # fmt: skip


def machines(results: Sequence[RunResult]) -> list[str]:
    """A line saying which machines ran the runs, where they recorded it: a config's run is the same to the
    bit on one machine (either engine), not on another CPU, so a reader checking a run must know where."""
    counts = Counter(r.machine for r in results if r.machine is not None)
    if not counts:
        return []
    named = "; ".join(f"{name}: {n} run{'s' if n > 1 else ''}" for name, n in sorted(counts.items()))
    unknown = sum(r.machine is None for r in results)
    before = f"; {unknown} recorded before runs named their machine" if unknown else ""
    return ["", f"Machines: {named}{before}. A config gives the same run to the bit on one machine only."]


def left_out(results: Sequence[RunResult]) -> list[str]:
    """Lines saying whether every run's last evaluation counted every client it asked.

    A rejected reply (a timeout, a fault, a malformed or non-finite reply) leaves its client out of
    the mean over clients, the pooled accuracy and the validation accuracy: a reader must know.
    """
    recorded = [r for r in results if r.final_evaluate_rejected is not None]
    if not recorded:
        return []
    short = sorted((r for r in recorded if r.final_evaluate_rejected), key=lambda r: (r.label, r.seed))
    if not short:
        return ["", f"Every run's last evaluation counted every client it asked ({len(recorded)} runs)."]
    lines = [
        "",
        "Runs whose last evaluation left clients out (replies rejected): their accuracies are over fewer clients.",
        "",
    ]
    for r in short:
        counted = r.final_eval_clients if r.final_eval_clients is not None else "?"
        lines.append(
            f"- {r.label}, seed {r.seed}: {r.final_evaluate_rejected} rejected, {counted} counted ({r.run_dir})"
        )
    return lines


def markdown_report(
    results: Sequence[RunResult],
    target: float,
    settings: dict[str, list[str]],
    plots: dict[str, list[str]],
    reference: str = "",
    notes: Sequence[str] = (),
) -> str:
    """The whole report: per data setting its overrides, the table (a row per run label) and its plots (file names).

    ``reference``: the run label the paired differences are taken to (``fedhyper.results.paired_differences``);
    ``notes``: paragraphs after the introduction (what the grid left out).
    """
    lines = [
        "# Strategy comparison",
        "",
        "Mean ± sample std across seeds (the mean alone for one seed). Accuracy: mean over clients of "
        "each client's personalised model on its own test split (final: last evaluation; best: best "
        "evaluation); pooled: all clients' test examples together; validation: mean over clients on their "
        "validation splits (what tuning reads). Rounds to target: the first evaluated round at or above it, "
        "over the seeds that reached it. Traffic: training bytes sent to the clients and received from them, "
        "averaged over rounds. "
        "Where runs report them: novel accuracy, that of the clients held out of training (novel_clients) and "
        "personalised afterwards, and the generalization gap from the trained clients' accuracy, in percentage points; "
        "hnet parameters, the hypernetwork's size.",
    ]
    for note in notes:
        lines += ["", note]
    by_setting: dict[str, list[GroupSummary]] = {}
    for g in summarise(results):
        by_setting.setdefault(g.setting, []).append(g)
    differences = paired_differences(results, reference)
    for setting, groups in by_setting.items():
        in_setting = [r for r in results if r.setting == setting]
        engines = sorted({r.engine for r in in_setting})
        overrides = " ".join(settings.get(setting, [])) or "(none)"
        lines += ["", f"## Setting `{setting}`", "", f"Overrides: `{overrides}`; engine: {', '.join(engines)}.", ""]
        lines.append(markdown_table(groups, target))
        lines += paired_table([d for d in differences if d.setting == setting], reference)
        lines += left_out(in_setting) + on_gpu(in_setting) + machines(in_setting)
        lines += [""] + [f"![{name}]({name})" for name in plots.get(setting, [])]
    return "\n".join(lines) + "\n"


def cell_name(cell: tuple[str, str, str]) -> str:
    """A grid cell (setting, strategy, variant) as the grid names it in its lines: ``strategy/variant · setting``."""
    setting, name, variant = cell
    return f"{run_label(name, variant)} · {setting}"


def settled_results(done: Sequence[RunResult], settled: Mapping[tuple[str, str, str], Settled]) -> list[RunResult]:
    """The finished runs with their final accuracies as ``settle`` evaluated them where it did; the others as recorded.

    A run of a settled cell that could not be evaluated with the chosen values (no checkpoint kept) is
    left out, so that no strategy's figures mix two evaluation protocols; its best accuracies are unknown.
    """
    out = []
    for r in done:
        cell = settled.get((r.setting, r.strategy, r.variant))
        if cell is None or cell.chosen is None:
            out.append(r)
        elif (m := cell.by_seed.get(r.seed)) is not None:
            accuracies = {
                "final_accuracy": m[record.ACCURACY],
                "final_accuracy_pooled": m.get(record.ACCURACY_POOLED),
                "val_accuracy": m.get(record.VAL_ACCURACY),
            }
            out.append(replace(r, **accuracies, best_accuracy=None, best_accuracy_pooled=None))
    return out


def _chosen(cell: Settled | None) -> str:
    if cell is None:
        return "–"
    if cell.chosen is None:
        return "as recorded (not settled)"
    return ", ".join(f"`{k.removeprefix('strategy.')}={v}`" for k, v in cell.chosen.items())


def settled_report(
    done: Sequence[RunResult], settled: Mapping[tuple[str, str, str], Settled], reference: str = ""
) -> str:
    """report.md's section for ``settle=true``: per setting, final accuracies with evaluation options re-chosen."""
    rows = settled_results(done, settled)
    lines = [
        "",
        "## Evaluation options chosen at convergence (settle=true)",
        "",
        "A strategy's options that act only when its clients evaluate (fine-tuning, adaptation) chosen again "
        f"on seed {SETTLE_SEED}'s final checkpoint by mean validation accuracy over clients, then every seed's "
        "final checkpoint evaluated with them, nothing training (`simulations/reevaluation.py`; every candidate's "
        "validation accuracy is in settled.yaml). Strategies without such options are as recorded above.",
    ]
    for setting in sorted({r.setting for r in rows}, key=[r.setting for r in done].index):
        groups = [g for g in summarise(rows) if g.setting == setting]
        lines += ["", f"### Setting `{setting}`", "",
                  "| strategy | seeds | final accuracy (%) | final pooled (%) | validation (%) | evaluation options |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for g in groups:
            cell = settled.get((g.setting, g.strategy, g.variant))
            lines.append(f"| {run_label(g.strategy, g.variant)} | {len(g.seeds)} | {pct(g.final_accuracy)} | "
                         f"{pct(g.final_accuracy_pooled)} | {pct(g.val_accuracy)} | {_chosen(cell)} |")  # fmt: skip
        lines += paired_table([d for d in paired_differences(rows, reference) if d.setting == setting], reference)
    missing = [(cell, why) for cell, s in settled.items() for why in s.missing]
    if missing:
        lines += ["", "Not evaluated:", ""]
        lines += [f"- {cell_name(cell)}: {why}" for cell, why in missing]
    return "\n".join(lines) + "\n"
