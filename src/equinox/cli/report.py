"""`equinox report` and `equinox experiment`: parse, call equinox.report / equinox.experiments, say where files went."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from equinox.cli.progress import Progress


def _report_out(paths: list[str]) -> Path:
    """Default output: <run dir>/../<name>-report for one run, <common parent>/report for several."""
    if len(paths) == 1:
        p = Path(paths[0]).resolve()
        from equinox.report.load import is_run_dir

        return p.parent / f"{p.name}-report" if is_run_dir(p) else p / "report"
    import os

    return Path(os.path.commonpath([Path(p).resolve() for p in paths])) / "report"


def run_report(args: argparse.Namespace) -> int:
    """`equinox report RUN_DIR...`."""
    from equinox.report import ReportOptions, write_report

    out = Path(args.out) if args.out else _report_out(args.run_dirs)
    progress = None if args.no_progress else Progress("report")
    result = write_report(args.run_dirs, out, ReportOptions(title=args.title), progress=progress)
    if progress:
        progress.done()
    for problem in result.problems:
        print(f"equinox: warning: {problem}", file=sys.stderr)
    print(f"report: {result.html}")
    print(f"tables: {result.markdown}, " + ", ".join(str(p) for p in result.csvs))
    print(f"plots:  {len(result.plots)} in {result.out_dir / 'plots'}")
    return 0


class _PhaseProgress:
    """Adapts (phase, done, total) to one progress bar per phase, plus a line per phase on stderr."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._phase: str | None = None
        self._bar: Progress | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        if phase != self._phase:
            self.close()
            self._phase = phase
            self._bar = Progress(f"{phase:<7}")
            if not self._bar._enabled:  # not a terminal: one line per phase instead of a bar
                print(f"equinox experiment: {phase}: {total} to do", file=sys.stderr, flush=True)
        if self._bar is not None:
            self._bar(done, total)

    def close(self) -> None:
        """Finish the current bar."""
        if self._bar is not None:
            self._bar.done()
            self._bar = None


def run_experiment_cmd(args: argparse.Namespace) -> int:
    """`equinox experiment NAME`."""
    from equinox.experiments import get_experiment, run_experiment

    exp = get_experiment(args.name)
    out = Path(args.out) if args.out else Path("experiments") / (exp.name + ("-quick" if args.quick else ""))
    command = "equinox experiment " + shlex.join(
        [exp.name, *(["--quick"] if args.quick else [])])
    progress = _PhaseProgress(not args.no_progress)
    print(f"equinox experiment {exp.name}: {exp.description}", file=sys.stderr)
    try:
        outcome = run_experiment(exp, out, quick=args.quick, jobs=args.jobs, command=command, progress=progress,
                                 ray_address=args.ray)
    finally:
        progress.close()
    print(f"{len(outcome.run_dirs)} runs ({outcome.num_probes} capacity probes) in {outcome.wall_s:.0f} s")
    print(f"report:  {outcome.report_html}")
    print(f"results: {outcome.results_md}")
    print(f"runs:    {outcome.out_dir / 'runs'}")
    for failure in outcome.failures:
        print(f"equinox: warning: run failed: {failure}", file=sys.stderr)
    return 1 if outcome.failures else 0


def add_report_parser(sub: Any) -> None:
    """Register `report` and `experiment`."""
    from equinox.experiments.sets import EXPERIMENTS

    p = sub.add_parser("report", help="HTML/Markdown/CSV report with plots from run directories",
                       description="Write a self-contained HTML report (plots embedded; opens offline), "
                                   "report.md, summary.csv and tenants.csv from one or more run directories. "
                                   "A directory that is not itself a run directory is searched for run "
                                   "directories below it.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory (or a folder of them)")
    p.add_argument("-o", "--out", help="report directory (default: <run>-report, or <common parent>/report)")
    p.add_argument("--title", default="Equinox report", help="page title")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_report)
    names = "\n".join(f"  {n:<11} {e.description}" for n, e in EXPERIMENTS.items())
    p = sub.add_parser("experiment", help="run a named experiment set in parallel and write one report",
                       description=f"Experiment sets:\n{names}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME", help=", ".join(EXPERIMENTS))
    p.add_argument("--quick", action="store_true", help="shorter traces and fewer points (paper: < 5 min on 2 cores)")
    p.add_argument("-j", "--jobs", type=int, help="parallel runs (default: every core)")
    p.add_argument("-o", "--out", help="output directory (default experiments/NAME[-quick])")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run each simulation as a Ray task: alone, on a local Ray instance; with ADDRESS "
                        "(e.g. auto, ray://head:10001), on that cluster (needs the ray extra)")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.set_defaults(func=run_experiment_cmd)
