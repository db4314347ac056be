"""User-side, resource-side, isolation and holistic indices on hand-built records with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equinox.metrics.collector import Collector, RequestRecord, TimeSeries
from equinox.metrics.fairness import FairnessSummary, jain_index
from equinox.metrics.holistic import (
    HOLISTIC_WEIGHTS,
    HolisticFairness,
    Reference,
    holistic_fairness,
    tenant_inflation,
)
from equinox.metrics.resource import ResourceFairness, resource_fairness, weighted_water_fill
from equinox.scheduling.interface import Platform
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage

T = 100.0  # arrival span


def rec(tenant: str, i: int, *, ttft: float | None, tpot: float = 0.05, arrival: float | None = None,
        prompt: int = 100, output: int = 11, reject: str | None = None) -> RequestRecord:
    """A request arriving at `arrival` (default i seconds) with the given TTFT and TPOT (None: never started)."""
    a = float(i) if arrival is None else arrival
    if reject is not None:
        return RequestRecord(f"{tenant}-{i}", tenant, a, prompt, 0, output, None, None, None, 0, 0.0, reject)
    if ttft is None:
        return RequestRecord(f"{tenant}-{i}", tenant, a, prompt, 0, output, None, None, None, 0, 0.0, None)
    first = a + ttft
    return RequestRecord(f"{tenant}-{i}", tenant, a, prompt, output, output, a, first, first + tpot * (output - 1),
                         0, tpot, None)


def tenant_records(tenant: str, n: int, factor: float = 1.0, **kw: float) -> list[RequestRecord]:
    """n requests of `tenant`: TTFT 0.2 s and TPOT 0.05 s, both scaled by `factor`."""
    return [rec(tenant, i, ttft=0.2 * factor, tpot=0.05 * factor, **kw) for i in range(n)]  # type: ignore[arg-type]


def token(jain: float = 1.0) -> FairnessSummary:
    return FairnessSummary(10, 0.0, 0.0, 0.0, jain, jain)


def evaluate(shared: list[RequestRecord], alone: dict[str, list[RequestRecord]], capacity: float, *,
             jain: float = 1.0, resource: ResourceFairness | None = None) -> HolisticFairness:
    tenants = sorted({r.tenant for r in shared})
    return holistic_fairness(
        shared, tenants=tenants, weights={}, token=token(jain), resource=resource or ResourceFairness.unavailable(),
        arrival_end_time=T, end_time=200.0, reference=Reference(alone, capacity),
    )


# Each request asks 100 + 2 * 11 = 122 weighted tokens; 50 requests over 100 s = 61 tokens/s.
DEMAND = 50 * 122 / T


def test_one_tenant_as_if_alone_one_inflated_twice() -> None:
    alone = {"a": tenant_records("a", 50), "b": tenant_records("b", 50)}
    shared = tenant_records("a", 50) + tenant_records("b", 50, factor=2.0)
    h = evaluate(shared, alone, capacity=10 * DEMAND)  # both far within their share
    by = {t.tenant: t for t in h.tenants}
    assert by["a"].latency_inflation == pytest.approx(1.0)
    assert by["b"].ttft_inflation == pytest.approx(2.0) and by["b"].tpot_inflation == pytest.approx(2.0)
    assert by["b"].latency_inflation == pytest.approx(2.0)
    assert by["b"].attainment == pytest.approx(0.5)
    assert h.latency_index == pytest.approx(1.5**2 / (2 * (1 + 0.25)))  # Jain(1, 0.5) = 0.9
    assert h.user_index == pytest.approx(0.5 * 1.0 + 0.5 * 0.9)
    assert h.num_flooding == 0 and math.isnan(h.isolation_inflation)  # nobody floods: isolation undefined
    assert h.terms == ("user",)  # no resource data, no flood
    assert h.holistic_index == pytest.approx(h.user_index)


def test_flooding_tenant_is_not_a_victim_of_its_own_queue() -> None:
    # "flood" sends 4x what "calm" sends; capacity 2.5x calm's demand: calm is within its share
    # (1.25 calm-demands), flood is far beyond it. Flood's own queue inflates its latency tenfold.
    alone = {"calm": tenant_records("calm", 50), "flood": tenant_records("flood", 200, arrival=0.0)}
    shared = tenant_records("calm", 50) + tenant_records("flood", 200, factor=10.0, arrival=0.0)
    h = evaluate(shared, alone, capacity=2.5 * DEMAND)
    by = {t.tenant: t for t in h.tenants}
    assert by["flood"].is_flooding and by["flood"].load_share == pytest.approx(4 / 1.25)
    assert by["calm"].is_flooding is False and by["calm"].load_share == pytest.approx(1 / 1.25)
    plain = jain_index([1 / by["calm"].latency_inflation, 1 / by["flood"].latency_inflation])
    assert plain == pytest.approx(1.1**2 / (2 * 1.01))  # plain Jain of latency would call this unfair
    assert h.latency_index == pytest.approx(1.0)  # demand-aware: the flood's queue is its own
    assert h.isolation_inflation == pytest.approx(1.0) and h.isolation_index == pytest.approx(1.0)
    assert h.terms == ("user", "isolation")


def test_isolation_is_the_worst_well_behaved_p90_inflation() -> None:
    alone = {t: tenant_records(t, 50) for t in ("calm1", "calm2")} | {"flood": tenant_records("flood", 400)}
    shared = (tenant_records("calm1", 50, factor=1.5) + tenant_records("calm2", 50, factor=3.0)
              + tenant_records("flood", 400, factor=20.0))
    h = evaluate(shared, alone, capacity=6 * DEMAND)  # guaranteed share 2 demands each: flood sends 8
    assert h.num_flooding == 1 and h.num_within_share == 2
    assert h.isolation_inflation == pytest.approx(3.0)
    assert h.isolation_index == pytest.approx(1 / 3)
    w = HOLISTIC_WEIGHTS
    assert h.holistic_index == pytest.approx((w["user"] * h.user_index + w["isolation"] / 3)
                                             / (w["user"] + w["isolation"]))


def test_rejections_lower_a_well_behaved_tenants_attainment() -> None:
    alone = {"a": tenant_records("a", 50), "b": tenant_records("b", 50)}
    rejected = [rec("b", i, ttft=None, reject="rate limit") for i in range(25)]
    shared = tenant_records("a", 50) + tenant_records("b", 25) + rejected
    h = evaluate(shared, alone, capacity=10 * DEMAND)
    by = {t.tenant: t for t in h.tenants}
    assert by["b"].rejected_fraction == pytest.approx(0.5) and by["b"].attainment == pytest.approx(0.5)
    assert h.latency_index == pytest.approx(0.9)


def test_a_request_that_never_started_counts_its_wait_so_far() -> None:
    alone = [rec("a", 0, ttft=1.0, tpot=0.05)]
    shared = [rec("a", 0, ttft=None, arrival=10.0)]
    ttft, _, combined, p90 = tenant_inflation(shared, alone, shared_end=50.0, alone_end=2.0)
    assert ttft == pytest.approx(40.0) and p90 == pytest.approx(40.0) and combined == pytest.approx(40.0)


def test_without_reference_only_baseline_free_metrics() -> None:
    shared = tenant_records("a", 10) + tenant_records("b", 10)
    h = holistic_fairness(shared, tenants=["a", "b"], weights={}, token=token(0.8),
                          resource=ResourceFairness.unavailable(), arrival_end_time=T, end_time=T)
    assert h.token_index == 0.8 and not h.has_reference
    assert all(math.isnan(v) for v in (h.latency_index, h.user_index, h.isolation_index, h.holistic_index))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1.0, 20.0), min_size=2, max_size=6))
def test_latency_index_falls_as_one_tenant_is_slowed(factors: list[float]) -> None:
    """Every other tenant served as if alone: slowing one tenant further never raises J_lat or H."""
    alone = {f"t{i}": tenant_records(f"t{i}", 20) for i in range(3)}
    last = (math.nan, math.nan)
    for f in sorted(factors):
        shared = tenant_records("t0", 20, factor=f) + tenant_records("t1", 20) + tenant_records("t2", 20)
        h = evaluate(shared, alone, capacity=100 * DEMAND)
        if not math.isnan(last[0]):
            assert h.latency_index <= last[0] + 1e-12 and h.holistic_index <= last[1] + 1e-12
        last = (h.latency_index, h.holistic_index)
        assert 0.0 <= h.holistic_index <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.floats(1.0, 10.0), st.floats(1.0, 10.0))
def test_isolation_inflation_grows_with_the_victims_latency(f1: float, f2: float) -> None:
    alone = {"calm": tenant_records("calm", 30), "flood": tenant_records("flood", 300)}
    values = []
    for f in sorted((f1, f2)):
        shared = tenant_records("calm", 30, factor=f) + tenant_records("flood", 300, factor=5.0)
        values.append(evaluate(shared, alone, capacity=3 * 30 * 122 / T).isolation_inflation)
    assert values[0] <= values[1] + 1e-12
    assert values[0] == pytest.approx(min(f1, f2))


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 1000.0), st.lists(st.tuples(st.floats(0.0, 500.0), st.floats(0.1, 5.0)), min_size=1,
                                        max_size=6))
def test_weighted_water_fill(total: float, pairs: list[tuple[float, float]]) -> None:
    demand = np.array([d for d, _ in pairs])
    weights = np.array([w for _, w in pairs])
    fair = weighted_water_fill(total, demand, weights)
    assert np.all(fair <= demand + 1e-9) and np.all(fair >= 0)
    assert fair.sum() == pytest.approx(min(total, demand.sum()), rel=1e-9, abs=1e-9)
    more = weighted_water_fill(total * 1.5 + 1, demand, weights)
    assert np.all(more >= fair - 1e-9)  # more to share never lowers anyone's fair share
    unsatisfied = fair < demand - 1e-9
    if unsatisfied.sum() >= 2:  # the unsatisfied share one level per unit of weight
        levels = fair[unsatisfied] / weights[unsatisfied]
        assert np.allclose(levels, levels[0])


def resource_series(gpu: list[float], kv: list[float], n: int = 200) -> TimeSeries:
    s = TimeSeries(1.0)
    s._grow(n - 1)
    s.num_kv_blocks = 100
    s.resource = {f"t{j}": {i: [g, k] for i in range(n)} for j, (g, k) in enumerate(zip(gpu, kv, strict=True))}
    return s


def test_resource_index_known_answer_and_demand_awareness() -> None:
    queued_both = np.ones((2, 202))
    r = resource_fairness(resource_series([0.75, 0.25], [0, 0]), ["t0", "t1"], queued_both, {}, 150.0)
    assert r.index_mean == pytest.approx(4 / (2 * (1.5**2 + 0.5**2)))  # Jain(1.5, 0.5) = 0.8
    # t1 has nothing queued: it got all it asked for, so t0 taking the rest is fair.
    queued_t0 = np.vstack([np.ones(202), np.zeros(202)])
    assert resource_fairness(resource_series([0.75, 0.25], [0, 0]), ["t0", "t1"], queued_t0, {},
                             150.0).index_mean == pytest.approx(1.0)
    # Dominant share: equal GPU time, but t0 holds 4x the KV memory (0.8 of it vs 0.2).
    kv = resource_fairness(resource_series([0.5, 0.5], [80, 20]), ["t0", "t1"], queued_both, {}, 150.0)
    assert kv.index_mean == pytest.approx(jain_index([0.8 / 0.65, 0.5 / 0.65]))
    # Weight 3 for t0: 0.75 / 0.25 is exactly its weighted fair share.
    weighted = resource_fairness(resource_series([0.75, 0.25], [0, 0]), ["t0", "t1"], queued_both, {"t0": 3.0},
                                 150.0)
    assert weighted.index_mean == pytest.approx(1.0)


def test_collector_apportions_iteration_time_and_kv_time() -> None:
    plat = Platform("test", s_per_prefill_token=1.0, s_per_context_token=0.01, s_weight_read=10.0)
    c = Collector(1.0, platform=plat)
    usage = {"a": TenantUsage(num_prefill_tokens=20, num_output_tokens=1, num_context_tokens=20, num_kv_blocks=2),
             "b": TenantUsage(num_output_tokens=4, num_context_tokens=400, num_kv_blocks=30)}
    c.on_step(StepReport(1, 0.25, 0.5, BatchShape(20, 1, 210, 4, 404), BatchLimits(64, 8), usage, 32, 100), 0, 2, 0)
    # raw a = 20 + 0.2 + 10 * 1/5 = 22.2; raw b = 4 + 10 * 4/5 = 12; the 0.5 s split 22.2 : 12.
    cells = c.series.resource
    assert cells["a"][0][0] == pytest.approx(0.5 * 22.2 / 34.2)
    assert cells["b"][0][0] == pytest.approx(0.5 * 12 / 34.2)
    assert cells["a"][0][0] + cells["b"][0][0] == pytest.approx(0.5)
    assert (cells["a"][0][1], cells["b"][0][1]) == pytest.approx((1.0, 15.0))  # blocks x duration


def test_a_run_stopped_before_its_arrivals_end_still_summarises() -> None:
    # `--until` earlier than the last arrival: the queue matrix has fewer intervals than the
    # windows up to the end of arrivals (used to raise IndexError in resource_fairness).
    from equinox.config import RunConfig
    from equinox.sim.run import run_simulation

    result = run_simulation(RunConfig(policy="equinox", duration_s=100, cost_model="vtc-a10g", until_s=80))
    assert result.stats.is_truncated
    assert result.summary is not None
