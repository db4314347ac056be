"""Run an experiment set on every core: capacity probes, then the runs, then one report and results.md."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from equinox.errors import EquinoxError
from equinox.experiments.results import results_markdown, results_tables
from equinox.experiments.sets import get_experiment
from equinox.experiments.spec import PROBE_DURATION_S, PROBE_RATE_SCALE, Capacity, ExperimentSet, ProbeKey, RunSpec

log = logging.getLogger(__name__)
# (phase, done, total): phases are "probes", "runs" and "report"
ProgressFn = Callable[[str, int, int], None]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ExperimentOutcome:
    """Where an experiment wrote its runs, report and results.md, and how long it took."""

    out_dir: Path
    run_dirs: list[Path]
    report_html: Path
    results_md: Path
    num_probes: int
    wall_s: float
    failures: list[str]  # "path: what went wrong" for each run that could not be made


def probe_capacity(key: ProbeKey) -> tuple[ProbeKey, Capacity]:
    """Saturated capacity (requests/s) of a platform on a workload, from a short overloaded FCFS run."""
    from equinox.sim.run import run_simulation

    r = run_simulation(key.probe_config())
    reqs = r.workload.requests
    tokens_per_req = sum(q.num_prompt_tokens + q.num_generated_tokens for q in reqs) / max(1, len(reqs))
    capacity = r.summary.throughput.tokens_per_s / max(tokens_per_req, 1e-9)
    base = len(reqs) / PROBE_RATE_SCALE / PROBE_DURATION_S
    return key, Capacity(capacity, base, len({q.tenant for q in reqs}))


def resolve(spec: RunSpec, capacities: dict[ProbeKey, Capacity]) -> RunSpec:
    """The spec with its capacity-relative rate scale and RPM limit filled in."""
    if not spec.needs_probe:
        return spec
    cap = capacities[spec.probe_key]
    config = spec.config
    if spec.rho is not None:
        config = config.replace(rate_scale=round(cap.rate_scale(spec.rho), 6))
    if spec.rpm_share is not None:
        config = config.replace(rpm_limit=round(cap.rpm_limit(spec.rpm_share), 3))
    return RunSpec(spec.path, config, spec.section, spec.labels, spec.variant, spec.rho, spec.rpm_share,
                   spec.is_detailed)


def run_one(spec: RunSpec, run_dir: str) -> str:
    """Simulate one spec and write its run directory plus experiment.json (grouping for the report)."""
    from equinox.rundir import write_run_dir
    from equinox.sim.run import run_simulation

    out = write_run_dir(run_simulation(spec.config), run_dir)
    meta: dict[str, Any] = {"variant": spec.variant, "section": spec.section, "labels": dict(spec.labels)}
    if spec.rho is not None:
        meta["rho"] = spec.rho
    (out / "experiment.json").write_text(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return str(out)


class ExperimentError(EquinoxError):
    """An experiment none of whose runs could be made."""


@dataclass(frozen=True)
class Failed:
    """A job that raised: one line saying what and why (the traceback goes to the log)."""

    message: str


def _outcome(fut: Callable[[], R], phase: str) -> R | Failed:
    try:
        return fut()
    except EquinoxError as exc:
        return Failed(str(exc))
    except Exception as exc:  # a bug in one run must not lose the other runs' results
        log.error("%s failed", phase, exc_info=True)
        return Failed(f"{type(exc).__name__}: {exc}")


def _map(pool: Executor | None, fn: Callable[..., R], args: Sequence[tuple[Any, ...]], phase: str,
         progress: ProgressFn | None) -> list[R | Failed]:
    """Apply `fn` to each argument tuple (in `pool` when given), reporting progress as results arrive."""
    results: list[Any] = [None] * len(args)
    if progress:
        progress(phase, 0, len(args))
    if pool is None:
        for i, a in enumerate(args):
            results[i] = _outcome(lambda a=a: fn(*a), phase)  # type: ignore[misc]
            if progress:
                progress(phase, i + 1, len(args))
        return results
    futures: dict[Future[R], int] = {pool.submit(fn, *a): i for i, a in enumerate(args)}
    for done, fut in enumerate(as_completed(futures), start=1):
        results[futures[fut]] = _outcome(fut.result, phase)
        if progress:
            progress(phase, done, len(args))
    return results


def run_experiment(
    name: str | ExperimentSet,
    out_dir: str | Path,
    *,
    quick: bool = False,
    jobs: int | None = None,
    command: str | None = None,
    progress: ProgressFn | None = None,
    ray_address: str | None = None,
) -> ExperimentOutcome:
    """Run every spec of the experiment in parallel and write runs/, report/ and results.md under `out_dir`.

    `ray_address` runs each simulation as a Ray task instead of a local process ("local": start
    a local Ray instance; "auto" or an address: join that cluster); results are identical.
    """
    started = time.perf_counter()
    exp = get_experiment(name) if isinstance(name, str) else name
    specs = exp.specs(quick)
    out = Path(out_dir)
    runs_root = out / "runs"
    probes = sorted({s.probe_key for s in specs if s.needs_probe})
    workers = max(1, min(jobs or os.cpu_count() or 1, max(len(specs), 1)))
    log.info("experiment %s: %d probes, %d runs, %d workers", exp.name, len(probes), len(specs), workers)
    pool: Executor | None = None
    if ray_address is None and workers > 1:
        pool = ProcessPoolExecutor(max_workers=workers)
    if ray_address is not None:
        from equinox.integrations.ray.executor import RayExecutor

        pool = RayExecutor(ray_address, num_cpus=jobs)
    failures: list[str] = []
    try:
        capacities: dict[ProbeKey, Capacity] = {}
        for key, got in zip(probes, _map(pool, probe_capacity, [(k,) for k in probes], "probes", progress),
                            strict=True):
            if isinstance(got, Failed):
                failures.append(f"capacity probe {key.workload} on {key.model}@{key.gpu}"
                                + (f"x{key.tensor_parallel}" if key.tensor_parallel > 1 else "") + f": {got.message}")
            else:
                capacities[key] = got[1]
        resolved = [resolve(s, capacities) for s in specs if not s.needs_probe or s.probe_key in capacities]
        failures += [f"{s.path}: skipped, its capacity probe failed" for s in specs
                     if s.needs_probe and s.probe_key not in capacities]
        made = _map(pool, run_one, [(s, str(runs_root / s.path)) for s in resolved], "runs", progress)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    done = [(s, Path(m)) for s, m in zip(resolved, made, strict=True) if not isinstance(m, Failed)]
    failures += [f"{s.path}: {m.message}" for s, m in zip(resolved, made, strict=True) if isinstance(m, Failed)]
    if not done:
        raise ExperimentError(f"experiment {exp.name}: no run succeeded; first failure: "
                              f"{failures[0] if failures else 'no runs defined'}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(
        [{"probe": k.__dict__, "measured": c.__dict__} for k, c in sorted(capacities.items())], indent=2) + "\n")
    specs_done, run_dirs = [s for s, _ in done], [d for _, d in done]
    report_html, results_md = _write_outputs(exp, specs_done, run_dirs, runs_root, quick, command, failures, progress)
    return ExperimentOutcome(out, run_dirs, report_html, results_md, len(probes), time.perf_counter() - started,
                             failures)


def _write_outputs(exp: ExperimentSet, specs: Sequence[RunSpec], run_dirs: Sequence[Path], runs_root: Path,
                   quick: bool, command: str | None, failures: list[str],
                   progress: ProgressFn | None) -> tuple[Path, Path]:
    from equinox.report import ReportOptions, load_run, write_report
    from equinox.report.plots import Plot

    out = runs_root.parent
    runs = [load_run(d, str(d.relative_to(runs_root))) for d in run_dirs]  # labels as in the spec paths
    detail = [r.label for r, s in zip(runs, specs, strict=True) if s.is_detailed]
    cmd = command or f"equinox experiment {exp.name}" + (" --quick" if quick else "")
    tables = results_tables(exp, specs, runs)
    extra_plots: list[Plot] = []
    if exp.analyse is not None:
        # Drawn before the report, which clears stale figures only of its own kinds (*.png it rewrites).
        analysis_tables, extra_plots = exp.analyse(specs, runs, out / "report" / "analysis")
        tables = [*analysis_tables, *tables]
    options = ReportOptions(title=f"Equinox experiment: {exp.name}" + (" (quick)" if quick else ""), command=cmd,
                            detail_labels=detail, max_scenarios=exp.max_scenarios, extra_tables=tables,
                            failures=tuple(failures), extra_plots=extra_plots,
                            extra_plots_title="Pareto views and analysis")
    report = write_report(runs, out / "report", options,
                          progress=(lambda d, t: progress("report", d, t)) if progress else None)
    results = out / "results.md"
    plot_links = [str(p.path.relative_to(out)) for p in extra_plots]
    results.write_text(results_markdown(exp, tables, cmd, quick, failures, plot_links), encoding="utf-8")
    return report.html, results
