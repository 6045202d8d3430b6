"""The arithmetic of bench/compare.py's tables, apart from the processes it starts, so that
tests/unit/bench/test_bench_report.py can check it: row labels from the flags actually passed,
ratios taken within one repetition and then their median, and the issue-16 summary table.

A "run" is one sip-bench result (its JSON object) with at least `responses_per_s` and
`server_cpu_us_per_response`, plus `rep`, the repetition it belongs to.
"""
from __future__ import annotations

import shlex
import statistics
from typing import Iterable, Mapping, Sequence


def config_label(flags: Sequence[str]) -> str:
    """A sip-redirectd row's name: the flags passed to it beyond the bench's own (--listen, --redis,
    --metrics, --domain, --log-level, --workers), or "defaults" when there are none, so a row says
    what ran even when a default changes."""
    return " ".join(flags) if flags else "defaults"


def parse_config(text: str) -> tuple[str, ...]:
    """The flags of one --config value: "defaults" (or empty) is none; otherwise shell words."""
    text = text.strip()
    return () if text in ("", "defaults") else tuple(shlex.split(text))


def rotated(items: Sequence, k: int) -> list:
    """`items` started at position k (mod its length): the order of repetition k."""
    if not items:
        return []
    k %= len(items)
    return list(items[k:]) + list(items[:k])


def med(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def paired_ratio(a: Sequence[Mapping], b: Sequence[Mapping], key: str = "responses_per_s") -> float:
    """The median over repetitions of a[key] / b[key], each ratio within one repetition (runs are
    paired by their `rep`; a repetition missing on either side or with b[key] == 0 is skipped).
    NaN when no pair is left."""
    by_rep = {r["rep"]: r for r in b}
    ratios = [r[key] / by_rep[r["rep"]][key] for r in a
              if r["rep"] in by_rep and by_rep[r["rep"]][key] > 0]
    return med(ratios)


def fmt_rate(v: float) -> str:
    return "—" if v != v else f"{v:,.0f}"  # NaN: no runs


def fmt_ratio(v: float) -> str:
    return "—" if v != v else f"{v:.2f}x"


def summary_table(rows: Sequence[tuple[str, int, int]], runs: Mapping[tuple, Sequence[Mapping]],
                  kamailio: str, ceiling: str) -> list[str]:
    """The table of issue 16, as markdown lines. `rows` are (config label, workers, generator
    sockets), in the order printed; runs[("ours", label, workers, sockets)] are that sip-redirectd's
    runs and runs[(kamailio, sockets)], runs[(ceiling, sockets)] the peers' runs with the same
    sockets, all in the same repetitions. Each sip-redirectd row gives its 302/s over Kamailio's
    (within one repetition, median), its server+Redis CPU per 302 (median) with Kamailio's and the
    null responder's beside it, and the medians of 302/s of all three."""
    out = ["| sip-redirectd | workers | generator sockets | 302/s vs Kamailio in memory | "
           "server+Redis CPU µs per 302 (Kamailio; null responder) | 302/s (Kamailio; null responder) |",
           "|---|---:|---:|---:|---:|---:|"]
    for label, workers, sockets in rows:
        ours = runs.get(("ours", label, workers, sockets), [])
        kam = runs.get((kamailio, sockets), [])
        ceil = runs.get((ceiling, sockets), [])

        def cpu(rs: Sequence[Mapping]) -> str:
            v = med(r["server_cpu_us_per_response"] for r in rs)
            return "—" if v != v else f"{v:.1f}"

        def rate(rs: Sequence[Mapping]) -> str:
            return fmt_rate(med(r["responses_per_s"] for r in rs))

        out.append(f"| {label} | {workers} | {sockets} | {fmt_ratio(paired_ratio(ours, kam))} | "
                   f"{cpu(ours)} ({cpu(kam)}; {cpu(ceil)}) | "
                   f"{rate(ours)} ({rate(kam)}; {rate(ceil)}) |")
    return out


CAPACITY_HEADER = [
    "| request | server | daemon CPU µs per response | Redis CPU µs per response | "
    "Redis commands per response | near-cache hits | per daemon core: responses/s | "
    "per Redis core: responses/s |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
]


def capacity_row(request: str, server: str, runs: Sequence[Mapping]) -> str:
    """One row of the capacity inputs (bench/CAPACITY.md) from runs that carry, besides
    server_cpu_us_per_response (daemon + its Redis), redis_cpu_us_per_response and
    redis_commands_per_response (and hit_ratio, None without a cache). The daemon's own CPU is the
    difference, run by run; per core is 10^6 µs over the CPU per response. Medians over runs."""
    daemon = med(r["server_cpu_us_per_response"] - r["redis_cpu_us_per_response"] for r in runs)
    redis = med(r["redis_cpu_us_per_response"] for r in runs)
    cmds = med(r["redis_commands_per_response"] for r in runs)
    hits = [r["hit_ratio"] for r in runs if r.get("hit_ratio") is not None]

    def per_core(us: float) -> str:
        return "—" if us != us or us <= 0 else fmt_rate(1e6 / us)

    def num(v: float, digits: int) -> str:
        return "—" if v != v else f"{v:.{digits}f}"

    return (f"| {request} | {server} | {num(daemon, 2)} | {num(redis, 2)} | {num(cmds, 3)} | "
            f"{f'{med(hits):.1%}' if hits else '—'} | {per_core(daemon)} | {per_core(redis)} |")
