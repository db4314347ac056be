"""`equinox simulate` end to end with memory that does not grow with the trace (issue 13).

The workload is read as the run goes (a sorted canonical CSV trace: workload/stream.py;
anything else is loaded whole, as before), each request's row goes to the run directory
when it leaves the engine, the summary is computed from compact columns
(metrics/records.py), and the served-alone reference runs replay a compact per-tenant
copy of the requests. The summary equals `run_simulation`'s to the bit; only the order
of rows in requests.csv differs (see `RunDirWriter`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equinox.config import RunConfig
from equinox.errors import ConfigError
from equinox.metrics.summary import RunSummary, summarise
from equinox.sim.engine import EngineConfig
from equinox.sim.hardware import Deployment
from equinox.sim.loop import ProgressFn, SimStats


@dataclass(frozen=True)
class StreamedRun:
    """What `run_streamed` wrote and measured (wall times are printed, never written to the run directory)."""

    config: RunConfig
    workload: Any  # a StreamedWorkload, or a Workload when the trace could not be streamed
    deployment: Deployment
    engine: EngineConfig
    cost_model_name: str
    stats: SimStats
    summary: RunSummary
    out: Path
    is_streamed: bool  # the workload was read as the run went
    wall_s: float  # load + simulate + summarise + write, without the reference runs
    reference_s: float | None  # the reference runs (None: skipped)


def open_workload(config: RunConfig) -> tuple[Any, bool]:
    """The config's workload: streamed when it is a sorted canonical CSV trace, else loaded whole."""
    from equinox.workload import load_workload
    from equinox.workload.stream import open_stream

    kw: dict[str, Any] = dict(seed=config.seed, duration_s=config.duration_s, rate_scale=config.rate_scale,
                              num_tenants=config.num_tenants)
    stream = open_stream(config.workload, **kw)
    if stream is not None:
        return stream, True
    return load_workload(config.workload, **kw), False


def run_streamed(
    config: RunConfig, out: str | Path, *, reference: bool = True, records_format: str = "csv",
    reference_cache: str | Path | None = None, progress: ProgressFn | None = None,
    workload: tuple[Any, bool] | None = None,
) -> StreamedRun:
    """Simulate `config` and write its run directory at `out` as the run goes (`workload`: `open_workload`'s)."""
    from equinox.metrics.baseline import CACHE_DIR_NAME, TenantSpill, streamed_reference
    from equinox.rundir import RunDirWriter, simulated_config
    from equinox.sim.run import simulate_columns

    if config.frontend().is_active:
        return _in_memory(config, out, reference=reference, reference_cache=reference_cache, progress=progress)
    started = time.perf_counter()
    wl, is_streamed = workload if workload is not None else open_workload(config)
    num_requests = wl.num_requests
    writer = RunDirWriter(out, interval_s=config.interval_s, records_format=records_format)
    spill = TenantSpill(num_requests) if reference else None
    source = wl if is_streamed else wl.requests
    requests = spill.tee(source) if spill is not None else iter(source)
    try:
        run, parts = simulate_columns(config, requests, weights_source=wl, num_requests=num_requests,
                                      on_request=writer.request_sink, counter_sink=writer.counters, progress=progress)
        records = run.records
        if len(records) and int(records.columns().rejected.sum()) == len(records):
            raise ConfigError(f"every one of the {len(records)} requests was rejected ({records.first_reject_reason});"
                              " these settings cannot serve this workload")
    except BaseException:
        writer.abort()
        raise
    weights = parts.policy_config.tenant_weights
    columns = records.columns()
    arrival_end = wl.duration_s
    if arrival_end is None:  # a Workload without a span (a streamed one always has one)
        arrival_end = wl.requests[-1].arrival_time if wl.requests else 0.0
    summary, _ = summarise(
        columns, run.series, weights=weights, peak_flops=parts.deployment.peak_flops, arrival_end_time=arrival_end,
        num_preemptions=run.num_preemptions, prompt_weight=config.prompt_weight, output_weight=config.output_weight,
        window_s=config.window_s, warmup_s=config.warmup_s, keep_matrix=False,
    )
    wall = time.perf_counter() - started
    reference_s = None
    if spill is not None:
        ref_started = time.perf_counter()
        cache = Path(reference_cache) if reference_cache is not None else Path(out).parent / CACHE_DIR_NAME
        ref = streamed_reference(config, spill, [t.tenant for t in summary.tenants], wl, cache)
        end_time = max(run.stats.end_time, len(run.series) * run.series.interval_s, columns.end_time())
        summary = summary.with_reference(
            columns, ref, weights={**wl.tenant_weights, **config.tenant_weights},
            arrival_end_time=arrival_end, end_time=end_time, prompt_weight=config.prompt_weight,
            output_weight=config.output_weight,
        )
        reference_s = time.perf_counter() - ref_started
    finish_started = time.perf_counter()
    doc = simulated_config(config, wl, parts.deployment, parts.engine, parts.cost_model.name,
                           num_requests=num_requests)
    writer.finish(config=doc, summary=summary, stats=dict(run.stats.__dict__), series=run.series,
                  weights={**wl.tenant_weights, **config.tenant_weights}, prompt_weight=config.prompt_weight,
                  output_weight=config.output_weight)
    wall += time.perf_counter() - finish_started
    return StreamedRun(config, wl, parts.deployment, parts.engine, parts.cost_model.name, run.stats, summary,
                       Path(out), is_streamed, wall, reference_s)


def _in_memory(config: RunConfig, out: str | Path, *, reference: bool, reference_cache: str | Path | None,
               progress: ProgressFn | None) -> StreamedRun:
    """The front-end model needs every request's client-side times: the in-memory path, as before issue 13."""
    from equinox.metrics.baseline import CACHE_DIR_NAME, with_reference
    from equinox.rundir import simulated_config, write_run_files
    from equinox.sim.run import run_simulation

    result = run_simulation(config, progress=progress)
    if result.records and all(r.reject_reason for r in result.records):
        raise ConfigError(f"every one of the {len(result.records)} requests was rejected "
                          f"({result.records[0].reject_reason}); these settings cannot serve this workload")
    reference_s = None
    if reference:
        ref_started = time.perf_counter()
        cache = Path(reference_cache) if reference_cache is not None else Path(out).parent / CACHE_DIR_NAME
        result = with_reference(result, cache)
        reference_s = time.perf_counter() - ref_started
    wl = result.workload
    doc = simulated_config(config, wl, result.deployment, result.engine, result.cost_model_name,
                           num_requests=len(wl.requests))
    write_started = time.perf_counter()
    write_run_files(out, config=doc, summary=result.summary, stats=dict(result.stats.__dict__),
                    records=result.records, series=result.series,
                    weights={**wl.tenant_weights, **config.tenant_weights}, prompt_weight=config.prompt_weight,
                    output_weight=config.output_weight)
    return StreamedRun(config, wl, result.deployment, result.engine, result.cost_model_name, result.stats,
                       result.summary, Path(out), False, result.wall_s + time.perf_counter() - write_started,
                       reference_s)
