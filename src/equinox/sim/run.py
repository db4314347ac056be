"""Build a simulated run from a RunConfig, run it, summarise it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from equinox.config import RunConfig
from equinox.metrics.collector import Collector, RequestRecord, TimeSeries
from equinox.metrics.fairness import ServiceMatrix
from equinox.metrics.summary import RunSummary, summarise
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy
from equinox.sim.backend import CostModelBackend
from equinox.sim.cost_model import CostModel
from equinox.sim.engine import EngineConfig, make_engine
from equinox.sim.hardware import Deployment, make_deployment
from equinox.sim.loop import ProgressFn, SimStats, Simulator
from equinox.types import StepReport
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


def policy_config(config: RunConfig, workload: Workload) -> PolicyConfig:
    """Policy settings: workload tenant weights overridden by the config's."""
    weights = {**workload.tenant_weights, **config.tenant_weights}
    return PolicyConfig(
        tenant_weights=weights, prompt_weight=config.prompt_weight, output_weight=config.output_weight,
        rpm_limit=config.rpm_limit, params=dict(config.policy_params),
    )


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
    deployment = make_deployment(config.gpu, config.model, config.tensor_parallel)
    engine = config.engine_config(deployment.num_kv_blocks(config.block_size))
    cost_model = build_cost_model(config, deployment)
    pcfg = policy_config(config, workload)
    policy = make_policy(config.policy, pcfg)
    policy.set_platform(deployment.platform(cost_model))  # the simulator host's platform
    scheduler = make_engine(engine, policy)

    def flops_of(report: StepReport) -> float:
        return deployment.flops(report.batch)

    from equinox.metrics.resource import deployment_platform  # per-tenant GPU time for the resource metric

    collector = Collector(config.interval_s, flops_of, platform=deployment_platform(deployment))
    frontend = config.frontend()  # the API server around the engine: zero-cost when inactive
    requests = frontend.engine_arrivals(workload.requests) if frontend.is_active else workload.requests
    sim = Simulator(
        requests, scheduler, CostModelBackend(cost_model), collector,
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
