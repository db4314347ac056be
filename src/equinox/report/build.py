"""Assemble a report directory: report.html (self-contained), report.md, CSV tables and plots/*.png."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from equinox.report.compare import comparison_plots
from equinox.report.groups import scenarios, variant
from equinox.report.html import Section, render_html
from equinox.report.load import ReportError, RunData, load_runs
from equinox.report.plots import Plot, run_plots, slug
from equinox.report.tables import METRIC_NOTES, Table, markdown, summary_table, tenant_table, write_csv

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ReportOptions:
    """What to put in a report beyond the defaults."""

    title: str = "Equinox report"
    command: str | None = None  # the command line that produced the runs, shown in the header
    detail_labels: Sequence[str] | None = None  # runs that get per-run figures (None: every run)
    max_scenarios: int | None = None  # scenario comparison figures for the first N scenarios (None: all)
    extra_tables: Sequence[Table] = ()  # experiment-specific tables, shown first
    failures: Sequence[str] = ()  # runs an experiment could not make, listed at the top
    extra_plots: Sequence[Plot] = ()  # experiment-specific figures, in their own section after the summary
    extra_plots_title: str = "Experiment figures"


@dataclass
class ReportResult:
    """Paths of everything written, and what was missing."""

    out_dir: Path
    html: Path
    markdown: Path
    csvs: list[Path]
    plots: list[Plot]
    problems: list[str] = field(default_factory=list)


def _run_meta(run: RunData) -> str:
    cfg = run.run_config
    bits = [f"workload {run.workload}", f"deployment {run.deployment}", f"policy {variant(run)}"]
    if cfg:
        bits.append(f"engine {cfg.get('engine_mode', '?')}, rate x{cfg.get('rate_scale', 1):g}, seed {cfg.get('seed')}")
    if run.config.get("kind"):
        bits.append(str(run.config["kind"]))
    return "; ".join(bits) + f"; directory {run.path}"


def write_report(
    paths_or_runs: Sequence[str | Path] | Sequence[RunData],
    out_dir: str | Path,
    options: ReportOptions | None = None,
    progress: ProgressFn | None = None,
) -> ReportResult:
    """Load the runs (unless given loaded), draw every figure their files allow, and write the report."""
    opts = options or ReportOptions()
    if all(isinstance(r, RunData) for r in paths_or_runs):
        runs = [r for r in paths_or_runs if isinstance(r, RunData)]
    else:
        runs = load_runs([p for p in paths_or_runs if not isinstance(p, RunData)])
    if not runs:
        raise ReportError("no run directories given")
    out = Path(out_dir)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for old in plot_dir.glob("*.png"):  # a re-run must not leave stale figures behind
        old.unlink()
    detail = [r for r in runs if opts.detail_labels is None or r.label in opts.detail_labels]
    total = len(detail) + 1
    summary = summary_table(runs)
    tenants = tenant_table(runs)
    csvs = [write_csv(summary, out / "summary.csv"), write_csv(tenants, out / "tenants.csv")]
    for i, table in enumerate(opts.extra_tables):
        csvs.append(write_csv(table, out / f"{slug(table.title).lower() or f'table-{i}'}.csv"))
    sections = [Section("Summary", "summary", tables=[*opts.extra_tables, summary])]
    if opts.extra_plots:
        sections.append(Section(opts.extra_plots_title, slug(opts.extra_plots_title).lower(),
                                plots=list(opts.extra_plots)))
    compare = comparison_plots(runs, plot_dir, max_scenarios=opts.max_scenarios)
    if progress:
        progress(1, total)
    if compare:
        sections.append(Section("Comparisons", "comparisons", plots=compare,
                                intro=f"{len(scenarios(runs))} scenario(s); a scenario is one workload on one "
                                      "platform at one load, run under each policy."))
    all_plots = [*opts.extra_plots, *compare]
    for i, run in enumerate(detail, start=2):
        plots = run_plots(run, plot_dir)
        all_plots.extend(plots)
        sections.append(Section(f"Run: {run.label}", f"run-{slug(run.label)}", meta=_run_meta(run), plots=plots,
                                problems=run.problems))
        if progress:
            progress(i, total)
    sections.append(Section("Tenants", "tenants", tables=[tenants]))
    problems = [f"{r.label}: {p}" for r in runs for p in r.problems] + [f"run failed: {f}" for f in opts.failures]
    for p in problems:
        log.warning("%s", p)
    subtitle = [f"{len(runs)} run(s); per-run figures for {len(detail)}."]
    if opts.command:
        subtitle.append(f"Produced by <code>{html.escape(opts.command)}</code>")
    page = render_html(opts.title, subtitle, sections, problems, METRIC_NOTES)
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text(_markdown(opts, runs, sections, problems, out), encoding="utf-8")
    return ReportResult(out, html_path, md_path, csvs, all_plots, problems)


def _markdown(opts: ReportOptions, runs: Sequence[RunData], sections: Sequence[Section], problems: list[str],
              out: Path) -> str:
    lines = [f"# {opts.title}", ""]
    if opts.command:
        lines += [f"Produced by `{opts.command}`.", ""]
    if problems:
        lines += ["Incomplete run directories (these parts were skipped):", ""]
        lines += [f"- {p}" for p in problems] + [""]
    for sec in sections:
        if not sec.tables and not sec.plots:
            continue
        lines += [f"## {sec.title}", ""]
        if sec.meta:
            lines += [sec.meta, ""]
        for table in sec.tables:
            lines += [f"### {table.title}", "", markdown(table), ""]
        for plot in sec.plots:
            link = plot.path.relative_to(out) if plot.path.is_relative_to(out) else plot.path
            lines += [f"![{plot.title}]({link.as_posix()})", "", f"*{plot.title}.* {plot.caption}", ""]
    lines += ["## Definitions", ""] + [f"- {n}" for n in METRIC_NOTES] + [""]
    return "\n".join(lines)
