"""Report tables as plain rows, written as CSV and Markdown."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equinox.report import series
from equinox.report.groups import load_level, scenario_key, variant
from equinox.report.load import RunData

Cell = str | float | int | None

METRIC_NOTES = (
    "tok/s: (prompt + output) tokens of finished requests / (last finish - first arrival)",
    "TTFT: time to first token, seconds; TPOT: time per output token after the first, seconds",
    "svc diff: VTC's service difference (tokens/s), over 60 s windows after a 30 s warm-up",
    "Jain: Jain's index of weighted service relative to weighted max-min fair share, mean over windows "
    "(1 = perfectly fair)",
    "GPU busy: fraction of the span the engine computed; MFU: model FLOPs / (span x peak FLOP/s); "
    "KV use: mean fraction of KV blocks in use",
    "user idx: U = (Jain + J_lat) / 2, J_lat Jain's index of each tenant's latency attainment: min(1, 1 / latency "
    "inflation against the same tenant served alone) for tenants within their share of capacity, 1 for flooding "
    "tenants (their own queue is not unfairness); higher is fairer, in [0, 1]",
    "resource idx: R, Jain's index of each tenant's dominant share (GPU time or KV-memory time) relative to its "
    "weighted max-min fair share, mean over windows; higher is fairer",
    "isolation infl: worst p90 TTFT inflation (vs served alone) of a tenant within its share while another floods; "
    "lower is better, 1 = perfect isolation, n/a without a flooding tenant",
    "holistic idx: H = 0.4 U + 0.4 R + 0.2 min(1, 1 / isolation infl), renormalised over the defined terms; "
    "needs the simulator's served-alone runs (n/a on live runs). Definitions: docs/algorithm.md, Fairness metrics",
    "load share (tenants): offered weighted tokens/s over the tenant's guaranteed share of the saturation capacity "
    "(> 1: flooding); latency infl: sqrt(TTFT x TPOT inflation) against the tenant served alone",
)
_SUMMARY_METRICS = ("tok_s", "ttft_mean", "ttft_p90", "tpot_mean", "sd_max", "sd_mean", "jain", "user", "resource",
                    "iso_infl", "holistic", "busy", "mfu", "kv", "preempt", "finished", "rejected", "unfinished")
_LABELS = {key: label for key, label, _ in series.HEADLINE}


@dataclass(frozen=True)
class Table:
    """A titled table of cells."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]


def fmt(value: Cell) -> str:
    """A compact human-readable cell ('n/a' for missing values)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, int) or value.is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def summary_table(runs: Sequence[RunData]) -> Table:
    """One row per run: where it ran, the policy, and its headline numbers."""
    headers = ["run", "scenario", "policy", "load", *(_LABELS[k] for k in _SUMMARY_METRICS)]
    rows: list[list[Cell]] = []
    for run in runs:
        head = series.headline(run)
        level, axis = load_level(run)
        load = f"{level:.2f}x cap" if "capacity" in axis else (f"{level:.2f} req/s" if not math.isnan(level) else None)
        rows.append([run.label, scenario_key(run), variant(run), load, *(head[k] for k in _SUMMARY_METRICS)])
    return Table("Runs", headers, rows)


def tenant_table(runs: Sequence[RunData]) -> Table:
    """One row per run and tenant."""
    headers = ["run", "policy", "tenant", "weight", "requests", "finished", "service", "TTFT mean s", "TTFT p90 s",
               "TPOT mean s", "E2E mean s", "load share", "flooding", "latency infl", "TTFT p90 infl", "GPU s",
               "KV block-s"]
    rows: list[list[Cell]] = []
    for run in runs:
        for t in series.tenant_rows(run):
            rows.append([run.label, variant(run), t["tenant"], t["weight"], t["requests"], t["finished"],
                         t["service"], t["ttft_mean"], t["ttft_p90"], t["tpot_mean"], t["e2e_mean"],
                         t["load_share"], t["flooding"], t["latency_inflation"], t["ttft_p90_inflation"],
                         t["gpu_s"], t["kv_block_s"]])
    return Table("Tenants", headers, rows)


def write_csv(table: Table, path: Path) -> Path:
    """Machine-readable: raw numbers, empty cells for missing values."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(table.headers)
        for row in table.rows:
            w.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else _raw(v) for v in row])
    return path


def _raw(v: Any) -> str:
    return repr(round(v, 6)) if isinstance(v, float) else str(v)


def markdown(table: Table, *, drop: Sequence[str] = ()) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned)."""
    keep = [i for i, h in enumerate(table.headers) if h not in drop]
    numeric = [all(not isinstance(r[i], str) for r in table.rows) for i in keep]
    lines = ["| " + " | ".join(table.headers[i] for i in keep) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(fmt(row[i]).replace("|", "\\|") for i in keep) + " |")
    return "\n".join(lines)
