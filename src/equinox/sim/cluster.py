"""Cluster mode: N simulated replicas behind a router, with global fairness counters (issue 14).

Each replica is one engine model (`make_engine`) with its own policy, cost-model backend
and collector. A router picks the replica for every arrival; with a sync interval Δ the
replicas' policies take part in the global-counter protocol of
`scheduling/global_counters.py` (the code the Ray counter actor runs): every Δ seconds of
simulated time each replica reports its counters' growth, the service merges them, and
every replica reorders its queue by the merged, cluster-wide counters.

The loop is the single-replica simulator's step protocol (`schedule`, `execute`,
`update_from_result`) on one event heap keyed on (time, kind rank, sequence), without its
decode folding: a merge can fall between any two iterations. Same seed, same bytes out.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from equinox.config import RunConfig
from equinox.errors import ConfigError
from equinox.metrics.collector import Collector, TimeSeries
from equinox.metrics.summary import summarise
from equinox.request import Request, RequestSpec
from equinox.scheduling.global_counters import CounterClient, CounterService
from equinox.scheduling.policy import make_policy
from equinox.sim.backend import CostModelBackend, EngineBackend
from equinox.sim.engine import Engine, SchedulerOutput, make_engine
from equinox.sim.hardware import StepFlops, make_deployment
from equinox.sim.loop import SimStats
from equinox.sim.run import RunResult, build_cost_model, policy_config
from equinox.types import StepResult
from equinox.workload import Workload, load_workload

ROUTERS = ("round-robin", "least-work", "equinox-global")
_STEP_DONE, _ARRIVAL, _SYNC, _STOP = 0, 1, 2, 3  # ranks: results fold in before arrivals, merges after both


@dataclass(frozen=True)
class ClusterConfig:
    """How many replicas, how requests are routed, how often counters merge (None: never)."""

    num_replicas: int = 1
    router: str = "round-robin"
    sync_interval_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.num_replicas, int) or self.num_replicas < 1:
            raise ConfigError(f"--replicas must be an integer >= 1, got {self.num_replicas!r}")
        if self.router not in ROUTERS:
            raise ConfigError(f"--router must be one of {', '.join(ROUTERS)}, got {self.router!r}")
        if self.sync_interval_s is not None and not (
            self.sync_interval_s > 0 and math.isfinite(self.sync_interval_s)
        ):
            raise ConfigError(f"--sync-interval must be a finite number of seconds > 0, got {self.sync_interval_s!r}")
        if self.router == "equinox-global" and self.sync_interval_s is None:
            raise ConfigError("--router equinox-global routes on the merged counters: give --sync-interval SECONDS")

    @property
    def is_global(self) -> bool:
        """True when replicas merge their counters."""
        return self.sync_interval_s is not None


@dataclass
class Replica:
    """One simulated replica: engine (with its policy), backend, collector and what runs on it."""

    name: str
    engine: Engine
    backend: EngineBackend
    collector: Collector
    client: CounterClient | None = None
    in_flight: SchedulerOutput | None = None
    live: dict[str, Request] = field(default_factory=dict)
    num_routed: int = 0
    num_steps: int = 0

    @property
    def num_outstanding(self) -> int:
        """Requests waiting or running here."""
        return self.engine.policy.num_waiting + len(self.engine.running)

    def work_ahead_of(self, tenant: str) -> float:
        """Requests a new request of `tenant` would wait behind: running ones plus waiting ones of
        tenants whose merged counter is no higher (the policy would admit them first)."""
        policy = self.engine.policy
        counters = policy.shared_counters().get("counter", {})
        mine = counters.get(tenant, 0.0)
        ahead = sum(policy.num_waiting_of(t) for t, v in counters.items() if v <= mine)
        return len(self.engine.running) + ahead


Router = Callable[[Sequence[Replica], RequestSpec, int], Replica]


def _round_robin(replicas: Sequence[Replica], spec: RequestSpec, index: int) -> Replica:
    return replicas[index % len(replicas)]


def _least_work(replicas: Sequence[Replica], spec: RequestSpec, index: int) -> Replica:
    return min(replicas, key=lambda r: r.num_outstanding)  # ties: the lowest index


def _equinox_global(replicas: Sequence[Replica], spec: RequestSpec, index: int) -> Replica:
    return min(replicas, key=lambda r: r.work_ahead_of(spec.tenant))


ROUTER_FUNCTIONS: dict[str, Router] = {
    "round-robin": _round_robin, "least-work": _least_work, "equinox-global": _equinox_global,
}


@dataclass(frozen=True)
class ClusterRunResult(RunResult):
    """A cluster run: the merged records, series and summary, plus what each replica did."""

    cluster: ClusterConfig = ClusterConfig()
    replica_stats: tuple[dict[str, Any], ...] = ()
    counters: dict[str, dict[str, float]] = field(default_factory=dict)  # merged view at the end
    num_merges: int = 0


class ClusterSimulator:
    """Routes requests to replicas and steps them on one event heap; merges counters every Δ."""

    def __init__(
        self, requests: Iterable[RequestSpec], replicas: list[Replica], router: Router, *,
        sync_interval_s: float | None = None, until: float | None = None,
    ) -> None:
        self.replicas = replicas
        self.router = router
        self.sync_interval_s = sync_interval_s
        self.until = until
        self.service = CounterService() if sync_interval_s is not None else None
        self.now = 0.0
        self._arrivals = iter(requests)
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = itertools.count()
        self._num_arrivals = self._num_finished = self._num_rejected = 0
        self._last_arrival_time = 0.0
        self._has_more_arrivals = True
        self._end_time = 0.0  # the last arrival or iteration (merges alone do not extend a run)

    def _push(self, when: float, rank: int, payload: Any = None) -> None:
        heapq.heappush(self._heap, (when, rank, next(self._seq), payload))

    def run(self) -> SimStats:
        """Run until every request finished (or `until`)."""
        self._push_next_arrival()
        if self.until is not None:
            self._push(self.until, _STOP)
        if self.sync_interval_s is not None:
            self._push(self.sync_interval_s, _SYNC)
        truncated = False
        heap = self._heap
        while heap:
            when, rank, _, payload = heapq.heappop(heap)
            self.now = when
            if rank == _STEP_DONE:
                self._end_time = when
                self._on_step_done(*payload)
            elif rank == _ARRIVAL:
                self._end_time = when
                self._on_arrival(payload)
                self._push_next_arrival()
            elif rank == _SYNC:
                self._merge()
                if self._has_more_arrivals or any(r.engine.has_work or r.in_flight for r in self.replicas):
                    assert self.sync_interval_s is not None
                    self._push(when + self.sync_interval_s, _SYNC)
            else:
                truncated = any(r.live for r in self.replicas) or self._has_more_arrivals
                self._end_time = when
                break
            if not heap or heap[0][0] > when:  # every event of this instant is in: plan
                for replica in self.replicas:
                    if replica.in_flight is None:
                        self._start_step(replica)
        for replica in self.replicas:
            replica.engine.sync()
            for req in replica.live.values():
                replica.collector.on_done(req)  # unfinished: recorded, never lost silently
        num_steps = sum(r.num_steps for r in self.replicas)
        return SimStats(
            self._num_arrivals, self._num_finished, self._num_rejected, num_steps, self._end_time, truncated
        )

    def _push_next_arrival(self) -> None:
        spec = next(self._arrivals, None)
        if spec is None:
            self._has_more_arrivals = False
            return
        if spec.arrival_time < self._last_arrival_time:
            raise ValueError(f"requests must be sorted by arrival time: {spec.request_id} arrives at "
                             f"{spec.arrival_time} after one at {self._last_arrival_time}")
        self._last_arrival_time = spec.arrival_time
        self._push(spec.arrival_time, _ARRIVAL, spec)

    def _on_arrival(self, spec: RequestSpec) -> None:
        replica = self.router(self.replicas, spec, self._num_arrivals)
        self._num_arrivals += 1
        replica.num_routed += 1
        req = Request(spec)
        if replica.engine.add_request(req, self.now) is not None:
            self._num_rejected += 1
            replica.collector.on_done(req)
        else:
            replica.live[spec.request_id] = req

    def _start_step(self, replica: Replica) -> None:
        engine = replica.engine
        if not engine.has_work:
            return
        output = engine.schedule(self.now)
        if output.is_empty and output.preempted:  # only preempted: plan again with the freed KV
            output = engine.schedule(self.now)
        if output.is_empty:
            return
        result = replica.backend.execute(output)
        replica.in_flight = output
        self._push(self.now + result.duration_s, _STEP_DONE, (replica, output, result))

    def _on_step_done(self, replica: Replica, output: SchedulerOutput, result: StepResult) -> None:
        replica.in_flight = None
        engine = replica.engine
        outcome = engine.update_from_result(output, result)
        replica.num_steps += outcome.report.num_steps
        collector = replica.collector
        collector.on_step(outcome.report, engine.policy.num_waiting, len(engine.running), len(output.preempted))
        collector.sample_counters(self.now, engine.policy.counter_breakdown)
        for req in outcome.finished:
            self._num_finished += 1
            del replica.live[req.request_id]
            collector.on_done(req)

    def global_counters(self) -> dict[str, dict[str, float]]:
        """The exact cluster-wide counters now: the merged view plus every replica's growth since."""
        if self.service is None:
            out: dict[str, dict[str, float]] = {}
            for replica in self.replicas:
                for kind, per in replica.engine.policy.shared_counters().items():
                    merged = out.setdefault(kind, {})
                    for tenant, v in per.items():
                        merged[tenant] = merged.get(tenant, 0.0) + v
            return out
        out = self.service.view()
        for replica in self.replicas:
            assert replica.client is not None
            for kind, per in replica.client.unreported().items():
                merged = out.setdefault(kind, {})
                for tenant, v in per.items():
                    merged[tenant] = merged.get(tenant, 0.0) + v
        return out

    def _merge(self) -> None:
        """Every replica reports, then every replica reads the merged view (one round of the protocol)."""
        service = self.service
        assert service is not None
        for replica in self.replicas:
            assert replica.client is not None
            service.merge(replica.client.report())
        view = service.view()
        for replica in self.replicas:
            assert replica.client is not None
            replica.client.apply(view)


def merge_series(series: Sequence[TimeSeries]) -> TimeSeries:
    """One cluster-wide series: service, resource and step counts summed; busy and KV time averaged
    per replica (so busy fraction and KV utilisation stay fractions of the cluster)."""
    n = len(series)
    merged = TimeSeries(series[0].interval_s)
    length = max(len(s) for s in series)
    merged._grow(length - 1)
    for s in series:
        for name, column in s.columns.items():
            target = merged.columns[name]
            scale = 1.0 / n if name == "busy_s" else 1.0
            for i, value in enumerate(column):
                target[i] += value * scale
        for tenant, per in s.service.items():
            cells = merged.service.setdefault(tenant, {})
            for i, (p, o) in per.items():
                cell = cells.setdefault(i, [0, 0])
                cell[0] += p
                cell[1] += o
        for tenant, res in s.resource.items():
            rcells = merged.resource.setdefault(tenant, {})
            for i, (g, kv) in res.items():
                rcell = rcells.setdefault(i, [0.0, 0.0])
                rcell[0] += g / n  # GPU-seconds as a share of the cluster
                rcell[1] += kv
        merged.num_kv_blocks += s.num_kv_blocks
        for i, kinds in s.counters.items():
            merged.counters.setdefault(i, kinds)  # replica 0's sample (merged views agree up to Δ)
    return merged


def run_cluster(
    config: RunConfig, cluster: ClusterConfig, workload: Workload | None = None,
) -> ClusterRunResult:
    """Simulate `config` on `cluster.num_replicas` identical replicas behind `cluster.router`."""
    started = time.perf_counter()
    if workload is None:
        workload = load_workload(
            config.workload, seed=config.seed, duration_s=config.duration_s,
            rate_scale=config.rate_scale, num_tenants=config.num_tenants,
        )
    if config.frontend().is_active:
        raise ConfigError("cluster mode does not model the API front-end yet: drop the --frontend-* options")
    replicas, platform_deployment = build_replicas(config, cluster, workload)
    sim = ClusterSimulator(
        workload.requests, replicas, ROUTER_FUNCTIONS[cluster.router],
        sync_interval_s=cluster.sync_interval_s, until=config.until_s,
    )
    stats = sim.run()
    return _result(config, cluster, workload, platform_deployment, replicas, sim, stats, started)


def build_replicas(config: RunConfig, cluster: ClusterConfig, workload: Workload) -> tuple[list[Replica], Any]:
    """The replicas of `cluster` (engine, policy, backend, collector, counter client) and the deployment."""
    deployment = make_deployment(config.gpu, config.model, config.tensor_parallel)
    engine_config = config.engine_config(deployment.num_kv_blocks(config.block_size))
    cost_model = build_cost_model(config, deployment)
    pcfg = policy_config(config, workload)
    from equinox.metrics.resource import deployment_platform

    flops_of = StepFlops(deployment)  # deployment.flops(report.batch), compiled with the core

    replicas = []
    for i in range(cluster.num_replicas):
        policy = make_policy(config.policy, pcfg)
        policy.set_platform(deployment.platform(cost_model))
        name = f"replica-{i}"
        replicas.append(Replica(
            name, make_engine(engine_config, policy), CostModelBackend(cost_model),
            Collector(config.interval_s, flops_of, platform=deployment_platform(deployment)),
            CounterClient(name, policy) if cluster.is_global else None,
        ))
    return replicas, (deployment, engine_config, cost_model)


def _result(
    config: RunConfig, cluster: ClusterConfig, workload: Workload, built: Any, replicas: list[Replica],
    sim: ClusterSimulator, stats: SimStats, started: float,
) -> ClusterRunResult:
    deployment, engine_config, cost_model = built
    pcfg = policy_config(config, workload)
    records = sorted((r for rep in replicas for r in rep.collector.records), key=lambda r: r.request_id)
    series = merge_series([rep.collector.series for rep in replicas])
    arrival_end = workload.duration_s
    if arrival_end is None:
        arrival_end = workload.requests[-1].arrival_time if workload.requests else 0.0
    summary, matrix = summarise(
        records, series, weights=pcfg.tenant_weights,
        peak_flops=deployment.peak_flops * cluster.num_replicas, arrival_end_time=arrival_end,
        num_preemptions=sum(rep.collector.num_preemptions for rep in replicas),
        prompt_weight=config.prompt_weight, output_weight=config.output_weight,
        window_s=config.window_s, warmup_s=config.warmup_s,
    )
    replica_stats = tuple(
        {"name": rep.name, "num_routed": rep.num_routed, "num_steps": rep.num_steps,
         "num_preemptions": rep.collector.num_preemptions}
        for rep in replicas
    )
    service = sim.service
    return ClusterRunResult(
        config, workload, deployment, engine_config, cost_model.name, stats, records, series, summary, matrix,
        time.perf_counter() - started, cluster, replica_stats,
        service.view() if service is not None else {}, service.num_merges if service is not None else 0,
    )
