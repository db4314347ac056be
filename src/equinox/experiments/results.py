"""Results tables of an experiment (one per section, plus policy-vs-policy ratios) and its results.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from equinox.experiments.spec import ExperimentSet, RunSpec
from equinox.report import series
from equinox.report.load import RunData
from equinox.report.tables import METRIC_NOTES, Cell, Table, markdown

METRICS = (("tok_s", "tok/s"), ("ttft_mean", "TTFT s"), ("ttft_p90", "TTFT p90 s"), ("tpot_mean", "TPOT s"),
           ("sd_mean", "svc diff"), ("jain", "Jain"), ("busy", "busy"), ("mfu", "MFU"), ("preempt", "preempt"))


def _label_columns(specs: Sequence[RunSpec]) -> list[str]:
    return list(dict.fromkeys(k for s in specs for k, _ in s.labels))


def results_tables(exp: ExperimentSet, specs: Sequence[RunSpec], runs: Sequence[RunData]) -> list[Table]:
    """One table per section (rows in spec order) and one per comparison pair."""
    if len(specs) != len(runs):
        raise ValueError(f"{len(specs)} specs but {len(runs)} runs")
    sections: dict[str, list[tuple[RunSpec, dict[str, float]]]] = {}
    for spec, run in zip(specs, runs, strict=True):
        sections.setdefault(spec.section, []).append((spec, series.headline(run)))
    tables = []
    for section, rows in sections.items():
        cols = _label_columns([s for s, _ in rows])
        body: list[list[Cell]] = []
        for spec, head in rows:
            labels = dict(spec.labels)
            row: list[Cell] = [labels.get(c, "") for c in cols]
            body.append([*row, spec.config.rate_scale, *(head[k] for k, _ in METRICS)])
        tables.append(Table(section, [*cols, "rate scale", *(name for _, name in METRICS)], body))
    tables.extend(_comparisons(exp, specs, runs))
    return tables


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def _change(a: float, b: float) -> str:
    r = _ratio(a, b)
    return "n/a" if math.isnan(r) else f"{(r - 1) * 100:+.0f}%"


def _comparisons(exp: ExperimentSet, specs: Sequence[RunSpec], runs: Sequence[RunData]) -> list[Table]:
    index: dict[tuple[str, tuple[tuple[str, str], ...], str], dict[str, float]] = {}
    scenarios: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for spec, run in zip(specs, runs, strict=True):
        scenario = tuple((k, v) for k, v in spec.labels if k != "policy")
        index[(spec.section, scenario, spec.variant)] = series.headline(run)
        if (spec.section, scenario) not in scenarios:
            scenarios.append((spec.section, scenario))
    tables = []
    for a, b in exp.comparisons:
        rows: list[list[Cell]] = []
        for section, scenario in scenarios:
            ha, hb = index.get((section, scenario, a)), index.get((section, scenario, b))
            if ha is None or hb is None:
                continue
            where = section.split(",")[0] + " | " + " ".join(v for _, v in scenario)
            rows.append([where, _ratio(ha["tok_s"], hb["tok_s"]), _change(ha["ttft_mean"], hb["ttft_mean"]),
                         _change(ha["ttft_p90"], hb["ttft_p90"]), _change(ha["jain"], hb["jain"]),
                         _change(ha["sd_mean"], hb["sd_mean"]), ha["busy"], hb["busy"]])
        if rows:
            tables.append(Table(f"{a} relative to {b}", [
                "scenario", "throughput ratio", "TTFT mean", "TTFT p90", "Jain", "svc diff", f"busy {a}",
                f"busy {b}"], rows))
    return tables


def results_markdown(exp: ExperimentSet, tables: Sequence[Table], command: str, quick: bool,
                     failures: Sequence[str] = (), plots: Sequence[str] = ()) -> str:
    """results.md: every table with the exact command that produced it."""
    lines = [f"# Experiment `{exp.name}`{' (quick)' if quick else ''}", "", exp.description[0].upper()
             + exp.description[1:] + ".", "", f"Every table below was produced by `{command}` "
             "(simulated; same command, same numbers).", ""]
    if failures:
        lines += [f"**{len(failures)} run(s) failed and are missing from these tables:**", ""]
        lines += [f"- {f}" for f in failures] + [""]
    for table in tables:
        lines += [f"## {table.title}", "", f"Produced by `{command}`.", "", markdown(table), ""]
    if plots:
        lines += ["## Figures", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    lines += ["Metric definitions:", ""] + [f"- {n}" for n in METRIC_NOTES]
    lines += ["- rate scale: multiplier on the workload's arrival rates; loads given as 'x capacity' are "
              "relative to the platform's saturated throughput on that workload (a short overloaded FCFS probe, "
              "see capacity.json)", "- ratios and % changes: first policy relative to the second; for TTFT and "
              "svc diff lower is better, for throughput and Jain higher is better", ""]
    return "\n".join(lines)
