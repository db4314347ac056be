"""Build a simulated run from a RunConfig, run it, summarise it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from equinox.config import RunConfig
from equinox.metrics.collector import Collector, CounterSink, RequestRecord, TimeSeries
from equinox.metrics.fairness import ServiceMatrix
from equinox.metrics.records import RecordColumns, RequestTee
from equinox.metrics.summary import RunSummary, summarise
from equinox.request import Request, RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy
from equinox.sim.backend import CostModelBackend
from equinox.sim.cost_model import CostModel
from equinox.sim.engine import Engine, EngineConfig, make_engine
from equinox.sim.hardware import Deployment, StepFlops, make_deployment
from equinox.sim.loop import ProgressFn, SimStats, Simulator
from equinox.workload import Workload, load_workload


@dataclass(frozen=True)
class RunResult:
    """A finished simulated run: inputs, raw records, series and summary."""

    config: RunConfig
    workload: Workload
    deployment: Deployment
    engine: EngineConfig
    cost_model_name: str
    stats: SimStats
    records: list[RequestRecord]
    series: TimeSeries
    summary: RunSummary
    matrix: ServiceMatrix
    wall_s: float


def build_cost_model(config: RunConfig, deployment: Deployment) -> CostModel:
    """The configured cost model (`auto`: a fitted model with data for the deployment, else roofline)."""
    from equinox.sim import cost_models
    from equinox.sim.cost_models.runtime import with_runtime

    if config.cost_model == "auto":
        base = cost_models.default_cost_model(deployment)
    else:
        base = cost_models.build_cost_model(config.cost_model, deployment)
    return with_runtime(base, scale=config.runtime_scale, step_s=config.step_overhead_s,
                        seq_s=config.seq_overhead_s, decode_scale=config.decode_scale)


def policy_config(config: RunConfig, workload: Any) -> PolicyConfig:
    """Policy settings: workload tenant weights overridden by the config's (`workload.tenant_weights`)."""
    weights = {**workload.tenant_weights, **config.tenant_weights}
    return PolicyConfig(
        tenant_weights=weights, prompt_weight=config.prompt_weight, output_weight=config.output_weight,
        rpm_limit=config.rpm_limit, params=dict(config.policy_params),
    )


@dataclass(frozen=True)
class _Parts:
    deployment: Deployment
    engine: EngineConfig
    cost_model: CostModel
    policy_config: PolicyConfig
    scheduler: Engine


def _build(config: RunConfig, weights_source: Any) -> _Parts:
    """Deployment, engine config, cost model, policy and scheduler of a run (`weights_source.tenant_weights`)."""
    deployment = make_deployment(config.gpu, config.model, config.tensor_parallel)
    engine = config.engine_config(deployment.num_kv_blocks(config.block_size))
    cost_model = build_cost_model(config, deployment)
    pcfg = policy_config(config, weights_source)
    policy = make_policy(config.policy, pcfg)
    policy.set_platform(deployment.platform(cost_model))  # the simulator host's platform
    return _Parts(deployment, engine, cost_model, pcfg, make_engine(engine, policy))


def _collector(config: RunConfig, deployment: Deployment, **sinks: Any) -> Collector:
    from equinox.metrics.resource import deployment_platform  # per-tenant GPU time for the resource metric

    flops_of = StepFlops(deployment)  # deployment.flops(report.batch), compiled with the core

    return Collector(config.interval_s, flops_of, platform=deployment_platform(deployment), **sinks)


def run_simulation(
    config: RunConfig, workload: Workload | None = None, progress: ProgressFn | None = None
) -> RunResult:
    """Simulate `config` (loading its workload unless one is given)."""
    started = time.perf_counter()
    if workload is None:
        workload = load_workload(
            config.workload, seed=config.seed, duration_s=config.duration_s,
            rate_scale=config.rate_scale, num_tenants=config.num_tenants,
        )
    parts = _build(config, workload)
    deployment, engine, cost_model, pcfg = parts.deployment, parts.engine, parts.cost_model, parts.policy_config
    collector = _collector(config, deployment)
    frontend = config.frontend()  # the API server around the engine: zero-cost when inactive
    requests = frontend.engine_arrivals(workload.requests) if frontend.is_active else workload.requests
    sim = Simulator(
        requests, parts.scheduler, CostModelBackend(cost_model), collector,
        until=config.until_s, progress=progress, num_requests_hint=len(workload.requests),
    )
    stats = sim.run()
    records = collector.records
    if frontend.is_active:
        records = frontend.client_records(records, {r.request_id: r.arrival_time for r in workload.requests})
    arrival_end = workload.duration_s
    if arrival_end is None:
        arrival_end = workload.requests[-1].arrival_time if workload.requests else 0.0
    summary, matrix = summarise(
        records, collector.series, weights=pcfg.tenant_weights,
        peak_flops=deployment.peak_flops, arrival_end_time=arrival_end,
        num_preemptions=collector.num_preemptions, prompt_weight=config.prompt_weight,
        output_weight=config.output_weight, window_s=config.window_s, warmup_s=config.warmup_s,
    )
    return RunResult(
        config, workload, deployment, engine, cost_model.name, stats, records,
        collector.series, summary, matrix, time.perf_counter() - started,
    )


@dataclass(frozen=True)
class StreamedRecords:
    """A run simulated with its requests streamed in and its records kept as columns."""

    records: RecordColumns
    series: TimeSeries
    stats: SimStats
    num_preemptions: int


def simulate_columns(
    config: RunConfig, requests: Iterable[RequestSpec], *, weights_source: Any, num_requests: int,
    on_request: Callable[[Request], None] | None = None, counter_sink: CounterSink | None = None,
    progress: ProgressFn | None = None,
) -> tuple[StreamedRecords, _Parts]:
    """Simulate `requests` (an iterator is read as the run goes) keeping records as compact columns.

    `on_request` sees every request as it leaves the engine (after its columns row is added).
    The front-end model is not applied: `run_streamed` falls back to `run_simulation` for it.
    """
    parts = _build(config, weights_source)
    columns = RecordColumns()
    sink: Callable[[Request], None] = columns.add_request if on_request is None else RequestTee(columns, on_request)
    collector = _collector(config, parts.deployment, request_sink=sink, counter_sink=counter_sink)
    sim = Simulator(requests, parts.scheduler, CostModelBackend(parts.cost_model), collector,
                    until=config.until_s, progress=progress, num_requests_hint=num_requests)
    stats = sim.run()
    return StreamedRecords(columns, collector.series, stats, collector.num_preemptions), parts
